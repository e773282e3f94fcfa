"""The typed values the command lines hand to the library: read this first.

The layers, top to bottom: the command lines (`rpr`, `patience`, `patience-daemon`) parse
flags, merge the configuration files and the environment under them, and build the values
of this module; the library (the retry loop, rpr's runner, the coordination with the daemon,
the daemon itself) takes these values and nothing else of the command line; under it, the
pure core (durations, backoff maths, the limiter algorithms, schedules).

Every value here is a plain slotted class that checks itself when built, so that a bad value
is refused where it enters, with a message naming the fix. This module is imported on every
start of both tools, so it imports nothing but `patience.durations` (already loaded).
"""

from __future__ import annotations

from patience.durations import format_duration

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_ALIASES",
    "DEFAULT_ALGORITHM",
    "DIOPHANTINE",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "Limit",
    "RateLimitError",
    "algorithm_name",
    "check_limit",
]

# The rate-limit algorithms, by the names users write in flags, files and protocol messages
# (patience.ratelimit.algorithms implements each), and the one used when none is named.
DIOPHANTINE = "diophantine"  # the Go tools' name of the exact sliding-window log
ALGORITHMS = (DIOPHANTINE, "fixed-window", "gcra")
ALGORITHM_ALIASES = {"sliding-window": DIOPHANTINE}  # what the library also calls it
DEFAULT_ALGORITHM = DIOPHANTINE

# The limits any limiter takes, wherever they come from (flags, configuration, the daemon's
# protocol, which carries the same bounds): up to 2^40 tokens per window, windows from 1ms
# (GCRA counts in nanoseconds; a shorter window means nothing for starting processes) to
# 10 years.
MAX_LIMIT = 1 << 40
MIN_WINDOW = 0.001
MAX_WINDOW = 3650 * 86400.0


class RateLimitError(ValueError):
    """A limit that cannot work or a request that can never fit; the message says the fix."""


def algorithm_name(name: str) -> str:
    """The canonical name of a rate-limit algorithm (an alias gives its algorithm)."""
    if name in ALGORITHMS:
        return name
    canonical = ALGORITHM_ALIASES.get(name)
    if canonical is None:
        raise RateLimitError(
            f'unknown rate-limit algorithm "{name}" (use {", ".join(ALGORITHMS[:-1])}'
            f" or {ALGORITHMS[-1]})"
        )
    return canonical


def check_limit(limit: int, window: float) -> None:
    """Raise RateLimitError unless `limit` per `window` is one a limiter can take."""
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise RateLimitError(f"rate limit {limit!r} is not a whole number (use e.g. 10)")
    if limit < 1:
        raise RateLimitError(f"rate limit {limit} is not positive (use 1 or more)")
    if limit > MAX_LIMIT:
        raise RateLimitError(f"rate limit {limit} is too large (at most {MAX_LIMIT}, 2^40)")
    if isinstance(window, bool) or not isinstance(window, (int, float)):
        raise RateLimitError(f"rate-limit window {window!r} is not a number of seconds")
    if not 0 < window < float("inf"):
        raise RateLimitError(f"rate-limit window {window!r} is not a positive duration (try 1m)")
    if window < MIN_WINDOW:
        raise RateLimitError(
            f"rate-limit window {format_duration(window)} is under 1ms (try 1ms or more)"
        )
    if window > MAX_WINDOW:
        raise RateLimitError(
            f"rate-limit window {format_duration(window)} is too long (at most"
            f" {format_duration(MAX_WINDOW)})"
        )


class Limit:
    """At most `count` starts in any `window` seconds, counted by `algorithm`: the one form
    of a rate limit, whether it comes from a flag (`rpr --rate 100/1h`), a configured
    resource, the daemon's reply or a protocol request. Checked when built."""

    __slots__ = ("algorithm", "count", "window")

    def __init__(self, count: int, window: float, algorithm: str = DEFAULT_ALGORITHM) -> None:
        check_limit(count, window)
        self.count = count
        self.window = float(window)
        self.algorithm = algorithm_name(algorithm)

    @classmethod
    def parse(cls, text: str, algorithm: str = DEFAULT_ALGORITHM) -> Limit:
        """ "100/1h" -> 100 per hour; "10/s" means 10 per second (`rpr --rate`). ValueError
        says what is expected."""
        from patience.durations import parse_duration
        from patience.numbers import refuse_foreign_digits, whole

        refuse_foreign_digits(text, "a rate")
        count, slash, per = text.partition("/")
        try:
            n = whole(count)
        except ValueError:
            n = 0
        if not slash or n < 1 or not per:
            raise ValueError(f'"{text}" is not a rate (try 100/1h or 10/s)')
        window = parse_duration(per if per[0] in "0123456789." else "1" + per)
        if window <= 0:
            raise ValueError(f'"{text}" needs a window longer than zero (try {n}/1m)')
        return cls(n, window, algorithm)

    def describe(self) -> str:
        """ "10 per 1m (diophantine)": what users see in messages and status output."""
        return f"{self.count} per {format_duration(self.window)} ({self.algorithm})"

    def _key(self) -> tuple[int, float, str]:
        return (self.count, self.window, self.algorithm)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Limit) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Limit({self.count}, {self.window!r}, {self.algorithm!r})"
