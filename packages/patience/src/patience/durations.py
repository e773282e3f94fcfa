"""Parse and format durations: Go syntax ("300ms", "1.5s", "1h30m") plus "d" for days.

Hand-written rather than a regular expression: `re` costs ~7 ms to import, and both
tools parse durations on every start.
"""

from __future__ import annotations

from patience.numbers import refuse_foreign_digits

__all__ = [
    "LONGEST",
    "DurationError",
    "format_duration",
    "offset_list",
    "parse_duration",
    "positive_duration",
]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_UNIT_CHARS = frozenset("nsuµμmhd")
_DIGITS = frozenset("0123456789.")
# The longest duration anyone means (100 years): a bound we choose, so that no wait, deadline
# or message has to cope with an unbounded or infinite number.
LONGEST = 36500 * 86400.0


class DurationError(ValueError):
    """A duration the user wrote that cannot be read; the message says how to fix it."""


def parse_duration(text: str) -> float:
    """Return the duration in seconds. Negative durations are refused: no caller wants one;
    nor are durations over LONGEST."""
    total = _parse(text)
    if total > LONGEST:
        raise DurationError(f'"{text}" is too long (at most {format_duration(LONGEST)})')
    return total


def _parse(text: str) -> float:
    s = text.strip()
    if not s:
        raise DurationError("empty duration (try 5s, 500ms or 1m30s)")
    refuse_foreign_digits(text, "a duration", DurationError)
    if s[0] == "-":
        if _parse(s[1:]) > 0:
            raise DurationError(f'"{text}" is negative (durations are 0 or more)')
        return 0.0
    if s[0] == "+":
        s = s[1:]
    if s == "0":
        return 0.0
    total = 0.0
    i = 0
    while i < len(s):
        start = i
        while i < len(s) and s[i] in _DIGITS:
            i += 1
        number = s[start:i]
        if not number or number == "." or number.count(".") > 1:
            raise DurationError(f'"{text}" is not a duration (try 5s, 500ms or 1m30s)')
        ustart = i
        while i < len(s) and (s[i].isalpha() or s[i] in _UNIT_CHARS):
            i += 1
        unit = s[ustart:i]
        if not unit:
            if i < len(s):
                raise DurationError(f'"{text}" is not a duration (try 5s, 500ms or 1m30s)')
            if start == 0:
                raise DurationError(f'"{text}" has no unit (try {text.strip()}s)')
            raise DurationError(f'"{text}" ends in {number} with no unit (try {text.strip()}s)')
        factor = _UNITS.get(unit)
        if factor is None:
            raise DurationError(
                f'"{text}" has an unknown unit "{unit}" (use ns, us, ms, s, m, h or d)'
            )
        total += float(number) * factor
    return total


def format_duration(seconds: float) -> str:
    """Short human form: 0.4s, 12ms, 1m30s, 2h5m. Round-trips through parse_duration."""
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds == 0:
        return "0s"
    if seconds < 1e-6:
        return f"{seconds * 1e9:.3g}ns"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1.0:
        ms = seconds * 1e3
        return f"{ms:.1f}".rstrip("0").rstrip(".") + "ms"
    if seconds < 60.0:
        return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    return "".join(f"{n}{u}" for n, u in parts if n) or "0s"


def positive_duration(text: str) -> float:
    """A duration that must be more than zero (--every, --timeout, ...)."""
    value = parse_duration(text)
    if value <= 0:
        raise DurationError(f'"{text}" must be more than zero')
    return value


def offset_list(text: str) -> list[float]:
    """ "0,10m,30m" -> [0.0, 600.0, 1800.0]: offsets from a start, in order."""
    from itertools import pairwise

    values = [parse_duration(part) for part in text.split(",")]
    for before, after in pairwise(values):
        if after < before:
            raise DurationError(
                f'"{text}" goes back in time ({format_duration(after)} after'
                f" {format_duration(before)}); list the offsets in order, e.g. 0,10m,30m"
            )
    return values
