"""The --until stop conditions of Miserlou's `loop`: a wall-clock time, output that
contains a string or matches a regex, output that changed since the previous run.

Output conditions look at both streams, line by line (a line longer than 64 KiB is seen in
pieces), and hold bounded memory: the change check keeps a digest per stream, not the text.
"""

from __future__ import annotations

from patience.capture import LineScanner
from patience.process import Sink
from repeater.stop import Until

__all__ = ["OutputDigest", "UntilChanges", "UntilMatch", "parse_until_time"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from hashlib import blake2b

    from patience.attempt import Attempt


def parse_until_time(text: str, now: float) -> float:
    """The instant (Unix time) `--until TEXT` names, read at wall-clock time `now`.

    `HH:MM` or `HH:MM:SS` is the next such local time (today, or tomorrow once it passed);
    an ISO date-time is local unless it carries an offset, and must be in the future.
    """
    from datetime import datetime, timedelta

    from patience.numbers import refuse_foreign_digits

    refuse_foreign_digits(text, "a time")
    clock = _clock_time(text)
    if clock is not None:
        today = datetime.fromtimestamp(now).replace(
            hour=clock[0], minute=clock[1], second=clock[2], microsecond=0
        )
        when = today if today.timestamp() > now else today + timedelta(days=1)
        return when.timestamp()
    try:
        instant = datetime.fromisoformat(text.strip()).timestamp()
    except ValueError:
        raise ValueError(
            f'"{text}" is not a time (try 17:30, 17:30:15 or 2026-05-09T17:30)'
        ) from None
    if instant <= now:
        raise ValueError(f'"{text}" is in the past (give a future time)')
    return instant


def _clock_time(text: str) -> tuple[int, int, int] | None:
    parts = text.strip().split(":")
    if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) <= 2 for p in parts):
        return None
    hour, minute, second = (int(p) for p in [*parts, "0"][:3])
    if hour > 23 or minute > 59 or second > 59:
        raise ValueError(f'"{text}" is not a time of day (hours 0-23, minutes 0-59)')
    return hour, minute, second


class UntilMatch(Until):
    """Stop after a run with a line of output matching `pattern` (--until-match, and
    --until-contains with the string escaped)."""

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self.matched = False

    def sink(self) -> Sink:
        self.matched = False
        return LineScanner(self._on_line)

    def _on_line(self, _stream: int, line: str) -> None:
        if not self.matched and self.pattern.search(line):
            self.matched = True

    def met(self, record: Attempt) -> bool:
        return self.matched


class OutputDigest(Sink):
    """A digest of each stream of one run's output, in constant memory."""

    def __init__(self) -> None:
        import hashlib

        self.hashes: dict[int, blake2b] = {1: hashlib.blake2b(), 2: hashlib.blake2b()}

    def feed(self, stream: int, data: bytes) -> None:
        self.hashes[stream].update(data)

    def value(self) -> tuple[bytes, bytes]:
        return self.hashes[1].digest(), self.hashes[2].digest()


class UntilChanges(Until):
    """Stop after a run whose output differs from the previous run's (--until-changes)."""

    def __init__(self) -> None:
        self.digest = OutputDigest()
        self.previous: tuple[bytes, bytes] | None = None

    def sink(self) -> Sink:
        self.digest = OutputDigest()
        return self.digest

    def met(self, record: Attempt) -> bool:
        current = self.digest.value()
        changed = self.previous is not None and current != self.previous
        self.previous = current
        return changed
