"""The typed values the command lines hand to the library: read this first.

The layers, top to bottom: the command lines (`rpr`, `patience`, `patience-daemon`) parse
flags, merge the configuration files and the environment under them, and build the values
of this package; the library (the retry loop, rpr's runner, the coordination with the
daemon, the daemon itself) takes these values and nothing else of the command line; under
it, the pure core (durations, backoff maths, the limiter algorithms, schedules).
docs/architecture.md draws it.

Here: `Limit` (the one form of a rate limit, the algorithms' names and the bounds),
`StrategySettings` (a backoff strategy and its parameters), `RunSettings` (each start of a
command, in both tools) and `RetrySettings` (one `patience` run). Beside, imported only with
`--daemon`: patience.settings.daemon (`DaemonSettings`, how a tool coordinates through
patience-daemon).

Every value is a plain slotted class that checks itself when built, so that a bad value is
refused where it enters, with a message naming the fix. This module is imported on every
start of both tools, so it imports nothing but `patience.durations` (already loaded).
"""

from __future__ import annotations

from patience.durations import format_duration

__all__ = [
    "ALGORITHMS",
    "ALGORITHM_ALIASES",
    "DEFAULT_ALGORITHM",
    "DIOPHANTINE",
    "FAIL_MODES",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "Declaration",
    "Limit",
    "Param",
    "ParamValue",
    "RateLimitError",
    "RetrySettings",
    "RunSettings",
    "StrategySettings",
    "algorithm_name",
    "check_limit",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Mapping, Sequence

    from patience.backoff import Strategy
    from patience.settings.daemon import DaemonSettings

# The rate-limit algorithms, by the names users write in flags, files and protocol messages
# (patience.ratelimit.algorithms implements each), and the one used when none is named.
DIOPHANTINE = "diophantine"  # the Go tools' name of the exact sliding-window log
ALGORITHMS = (DIOPHANTINE, "fixed-window", "gcra")
ALGORITHM_ALIASES = {"sliding-window": DIOPHANTINE}  # what the library also calls it
DEFAULT_ALGORITHM = DIOPHANTINE

# What a start does while the daemon is away (docs/protocol.md, "Restarts and outages"):
# keep to this client's share of the limit, to the whole limit, or stop.
FAIL_MODES = ("share", "full", "closed")

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


# A strategy parameter's value, by its declared kind: seconds or a number (float), a whole
# number, a plain strategy's name, planned offsets in seconds.
ParamValue = float | int | str | tuple[float, ...]


class Param:
    """One parameter: `name` is the keyword of the strategy's class (the flag is --name
    with dashes). `kind`: "duration" (seconds), "number", "whole", "strategy" (a plain
    backoff, by name or alias) or "offsets" (durations from the start, e.g. 0,10m,30m).
    Numbers lie in [low, high], or (low, high] when `low_open`."""

    __slots__ = ("default", "help", "high", "kind", "low", "low_open", "name")

    def __init__(
        self,
        name: str,
        kind: str,
        default: float | str,
        help: str,
        *,
        low: float | None = None,
        low_open: bool = False,
        high: float | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.default = default
        self.help = help
        self.low = low
        self.low_open = low_open
        self.high = high

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def bounds(self) -> str:
        """The values allowed, in words: `1..100`, `more than 0, at most 10`, `more than 0s`."""
        if self.kind in ("strategy", "offsets"):
            from patience.backoff import MAX_OFFSETS, PLAIN

            if self.kind == "strategy":
                return "one of " + ", ".join(PLAIN)
            return f"in order, at most {MAX_OFFSETS}"
        unit = "s" if self.kind == "duration" else ""
        if self.low is None:
            return "any"
        low, high = f"{self.low:g}{unit}", "" if self.high is None else f"{self.high:g}{unit}"
        if not self.low_open:
            return f"{low}..{high}" if high else f"at least {low}"
        return f"more than {low}, at most {high}" if high else f"more than {low}"

    def check(self, value: float, text: str) -> None:
        """Refuse `value`, read from `text`, with a ValueError naming the bounds it is out of."""
        low, high = self.low, self.high
        if low is not None and self.low_open and not value > low:
            if self.kind == "duration":
                least = "zero" if low == 0 else f"{low:g}s"
                raise ValueError(f'"{text}" must be more than {least}')
            raise ValueError(f"{text} is out of range ({self.bounds()})")
        if low is not None and value < low:
            raise ValueError(f"{text} is too small (at least {low})")
        if high is not None and value > high:
            raise ValueError(f"{text} is too large (at most {high})")

    def but(self, *, default: float | None = None, help: str = "") -> Param:
        """The same parameter with another default or help (a wrapper's own reading)."""
        return Param(
            self.name,
            self.kind,
            self.default if default is None else default,
            help or self.help,
            low=self.low,
            low_open=self.low_open,
            high=self.high,
        )


class Declaration:
    """A strategy as the command lines know it: names, what its delay is, its parameters.
    `plain` strategies are built by `make_strategy`; the others wrap a plain one."""

    __slots__ = ("aliases", "name", "params", "plain", "summary")

    def __init__(
        self,
        name: str,
        aliases: Sequence[str],
        summary: str,
        params: Sequence[Param],
        *,
        plain: bool = True,
    ) -> None:
        self.name = name
        self.aliases = tuple(aliases)
        self.summary = summary
        self.params = tuple(params)
        self.plain = plain


class StrategySettings:
    """A backoff strategy and the value of each parameter it declares (patience.backoff:
    name, kind, default, bounds), as `patience STRATEGY` and rpr's backoff modes build it
    from their flags. Checked against the declaration when built, so that a value the flags
    refuse is refused here too, with the same words."""

    __slots__ = ("name", "params")

    def __init__(self, name: str, params: Mapping[str, object] | None = None) -> None:
        from patience.backoff import DECLARATIONS, STRATEGY_NAMES

        canonical = STRATEGY_NAMES.get(name)
        if canonical is None:
            raise ValueError(f'unknown strategy "{name}" (one of {", ".join(DECLARATIONS)})')
        declared = DECLARATIONS[canonical].params
        given = dict(params or {})
        unknown = sorted(set(given) - {p.name for p in declared})
        if unknown:
            takes = ", ".join(p.flag for p in declared)
            raise ValueError(f"{canonical} has no parameter {unknown[0]} (it takes {takes})")
        self.name = canonical
        self.params = {p.name: _param_value(p, given.get(p.name, p.default)) for p in declared}
        try:
            self.rate()
        except RateLimitError as exc:
            flags = "/".join(p.flag for p in declared if p.name in ("rate_limit", "window"))
            raise RateLimitError(f"{flags}: {exc}") from None

    def number(self, name: str) -> float:
        """A duration (seconds) or number parameter."""
        value = self.params[name]
        assert isinstance(value, float), name
        return value

    def whole(self, name: str) -> int:
        value = self.params[name]
        assert isinstance(value, int), name
        return value

    def text(self, name: str) -> str:
        """A strategy-name parameter (the fallback of http-aware and adaptive)."""
        value = self.params[name]
        assert isinstance(value, str), name
        return value

    def offsets(self, name: str) -> tuple[float, ...]:
        value = self.params[name]
        assert isinstance(value, tuple), name
        return value

    def rate(self) -> Limit | None:
        """The rate limit the strategy keeps to by itself (diophantine's --rate-limit per
        --window); None for a strategy that has none."""
        if "rate_limit" not in self.params:
            return None
        return Limit(self.whole("rate_limit"), self.number("window"))

    def strategy(self) -> Strategy:
        """The plain backoff these settings describe (make_strategy's parameters)."""
        from patience.backoff import make_strategy

        return make_strategy(self.name, **self.params)

    def __repr__(self) -> str:
        return f"StrategySettings({self.name!r}, {self.params!r})"


def _param_value(param: Param, value: object) -> ParamValue:
    """`value` as the kind `param` declares, within its bounds; ValueError otherwise."""
    if param.kind == "strategy":
        from patience.backoff import PLAIN, STRATEGY_NAMES

        canonical = STRATEGY_NAMES.get(str(value))
        if canonical not in PLAIN:
            raise ValueError(f'"{value}" is not a backoff strategy (one of {", ".join(PLAIN)})')
        return str(canonical)
    if param.kind == "offsets":
        return _offsets(value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{param.flag}: {value!r} is not a number")
    if param.kind == "whole" and not isinstance(value, int):
        raise ValueError(f"{param.flag}: {value!r} is not a whole number")
    param.check(value, f"{value:g}")
    return value if param.kind == "whole" else float(value)


def _offsets(value: object) -> tuple[float, ...]:
    """Planned offsets: "0,10m,30m" (a declared default) or seconds, in order."""
    from patience.backoff import MAX_OFFSETS
    from patience.durations import offset_list

    if isinstance(value, str):
        return tuple(offset_list(value))
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"{value!r} is not a list of offsets (e.g. 0,10m,30m)")
    offsets = tuple(float(v) for v in value)
    if len(offsets) > MAX_OFFSETS:
        raise ValueError(f"{len(offsets)} offsets are more than the {MAX_OFFSETS} attempts allowed")
    from itertools import pairwise

    if any(later < earlier for earlier, later in pairwise(offsets)) or offsets[0] < 0:
        raise ValueError(f"offsets {offsets!r} are not in order from 0 (e.g. 0,10m,30m)")
    return offsets


class RunSettings:
    """How each start of the command runs and is judged, the same for an rpr run and a
    patience attempt (patience.attempt carries it out): the command, its timeout (None: no
    limit) and the grace before SIGKILL, the success and failure patterns (compiled when
    built: a bad one raises conditions.PatternError naming its flag)."""

    __slots__ = ("command", "failure_pattern", "kill_after", "success_pattern", "timeout")

    def __init__(
        self,
        command: Sequence[str],
        *,
        timeout: float | None = None,
        kill_after: float = 5.0,
        success_pattern: str | None = None,
        failure_pattern: str | None = None,
        case_insensitive: bool = False,
    ) -> None:
        if not command:
            raise ValueError("no command to run")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout {timeout!r} is not a positive duration")
        if not kill_after >= 0:
            raise ValueError(f"kill-after {kill_after!r} is not a duration")
        self.command = tuple(command)
        self.timeout = timeout
        self.kill_after = float(kill_after)
        self.success_pattern = _pattern(success_pattern, "--success-pattern", case_insensitive)
        self.failure_pattern = _pattern(failure_pattern, "--failure-pattern", case_insensitive)


def _pattern(text: str | None, flag: str, ignore_case: bool) -> re.Pattern[str] | None:
    if text is None:
        return None
    from patience.conditions import compile_pattern

    return compile_pattern(text, flag, ignore_case)


class RetrySettings:
    """One `patience` run: each attempt as `run` says, at most `attempts` of them, waiting
    as `strategy` says, within `max_time` (None: no budget), retrying only on the exit
    statuses of `retry_on` (None: any failure); `quiet` keeps only errors on stderr;
    `daemon` coordinates the attempts (None: no daemon). `sources` says where each setting
    came from (`--debug-config`)."""

    __slots__ = (
        "attempts",
        "daemon",
        "max_time",
        "quiet",
        "retry_on",
        "run",
        "sources",
        "strategy",
    )

    def __init__(
        self,
        run: RunSettings,
        strategy: StrategySettings,
        *,
        attempts: int = 3,
        max_time: float | None = None,
        retry_on: frozenset[int] | None = None,
        quiet: bool = False,
        daemon: DaemonSettings | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> None:
        if isinstance(attempts, bool) or not 1 <= attempts <= 1000:
            raise ValueError(f"--attempts {attempts!r} is not within 1..1000")
        if max_time is not None and not max_time > 0:
            raise ValueError(f"--max-time {max_time!r} is not a positive duration")
        if retry_on is not None and not all(0 <= code <= 255 for code in retry_on):
            raise ValueError("--retry-on: exit statuses lie within 0..255")
        planned = strategy.params.get("retry_offsets")
        if max_time is not None and isinstance(planned, tuple) and planned[0] > max_time:
            raise ValueError(
                f"--max-time {format_duration(max_time)} ends before the first planned attempt"
                f" (--retry-offsets starts at {format_duration(planned[0])})"
            )
        self.run = run
        self.strategy = strategy
        self.attempts = attempts
        self.max_time = max_time
        self.retry_on = retry_on
        self.quiet = quiet
        self.daemon = daemon
        self.sources = dict(sources or {})
