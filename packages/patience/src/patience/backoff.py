"""Backoff strategies: how long to wait after the n-th failed attempt.

Pure and clock-free: a strategy maps an attempt number (1-based) to a delay in seconds,
remembering what it must (decorrelated jitter remembers its previous delay). Randomness
comes from an injectable `rng` returning uniform floats in [0, 1), so tests are exact.
Every delay lies in [0, max_delay] at any attempt number: growth is computed so that it
saturates at the cap instead of overflowing to inf, NaN or a negative number.
"""

from __future__ import annotations

__all__ = [
    "BASE_DELAY",
    "DECLARATIONS",
    "DEFAULT_MAX_DELAY",
    "FALLBACK",
    "MAX_DELAY",
    "MAX_OFFSETS",
    "MULTIPLIER",
    "PLAIN",
    "STRATEGY_NAMES",
    "DecorrelatedJitter",
    "Exponential",
    "Fibonacci",
    "Fixed",
    "Jitter",
    "Linear",
    "Polynomial",
    "Strategy",
    "make_strategy",
    "parameter_table",
]

from patience.settings import Declaration, Param

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_MAX_DELAY = 60.0
MAX_OFFSETS = 1000  # planned attempts of diophantine, as --attempts allows


def _default_rng() -> Callable[[], float]:
    import random

    return random.random


def _grow(base: float, factor: float, power: float, cap: float) -> float:
    """min(base * factor**power, cap) for base, factor, power >= 0, without overflow."""
    if base <= 0.0 or cap <= 0.0:
        return 0.0
    try:
        value = base * float(factor) ** power
    except OverflowError:
        return cap
    return value if value < cap else cap


class Strategy:
    """Base: `next_delay(n)` is the delay after failed attempt n; `reset()` forgets history."""

    name = ""

    def __init__(self, max_delay: float = DEFAULT_MAX_DELAY) -> None:
        if max_delay < 0:
            raise ValueError("max_delay must be 0 or more")
        self.max_delay = max_delay

    def next_delay(self, attempt: int) -> float:
        raise NotImplementedError

    def reset(self) -> None:
        """Stateless strategies have nothing to forget."""


class Fixed(Strategy):
    """The same delay every time (never capped: the delay is what the user asked for)."""

    name = "fixed"

    def __init__(self, delay: float = 1.0) -> None:
        if delay < 0:
            raise ValueError("delay must be 0 or more")
        super().__init__(max_delay=delay)
        self.delay = delay

    def next_delay(self, attempt: int) -> float:
        return self.delay


class Exponential(Strategy):
    """base_delay * multiplier^(n-1)."""

    name = "exponential"

    def __init__(
        self,
        base_delay: float = 1.0,
        multiplier: float = 2.0,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        super().__init__(max_delay)
        _check_positive(base_delay=base_delay, multiplier=multiplier)
        self.base_delay = base_delay
        self.multiplier = multiplier

    def next_delay(self, attempt: int) -> float:
        return _grow(self.base_delay, self.multiplier, attempt - 1, self.max_delay)


class Linear(Strategy):
    """n * increment."""

    name = "linear"

    def __init__(self, increment: float = 1.0, max_delay: float = DEFAULT_MAX_DELAY) -> None:
        super().__init__(max_delay)
        _check_positive(increment=increment)
        self.increment = increment

    def next_delay(self, attempt: int) -> float:
        return _grow(self.increment, attempt, 1, self.max_delay)


class Jitter(Strategy):
    """Full jitter: uniform in [0, min(base_delay * multiplier^(n-1), max_delay))."""

    name = "jitter"

    def __init__(
        self,
        base_delay: float = 1.0,
        multiplier: float = 2.0,
        max_delay: float = DEFAULT_MAX_DELAY,
        rng: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(max_delay)
        _check_positive(base_delay=base_delay, multiplier=multiplier)
        self.base_delay = base_delay
        self.multiplier = multiplier
        self.rng = rng

    def next_delay(self, attempt: int) -> float:
        if self.rng is None:
            self.rng = _default_rng()
        ceiling = _grow(self.base_delay, self.multiplier, attempt - 1, self.max_delay)
        return ceiling * self.rng()


class DecorrelatedJitter(Strategy):
    """base + uniform [0, upper - base), upper = previous delay (or base) * multiplier,
    kept within [base, max_delay]: spreads clients apart while still growing."""

    name = "decorrelated-jitter"

    def __init__(
        self,
        base_delay: float = 1.0,
        multiplier: float = 2.0,
        max_delay: float = DEFAULT_MAX_DELAY,
        rng: Callable[[], float] | None = None,
    ) -> None:
        super().__init__(max_delay)
        _check_positive(base_delay=base_delay, multiplier=multiplier)
        self.base_delay = base_delay
        self.multiplier = multiplier
        self.rng = rng
        self.previous = 0.0

    def next_delay(self, attempt: int) -> float:
        if self.rng is None:
            self.rng = _default_rng()
        base, cap = self.base_delay, self.max_delay
        upper = _grow(self.previous or base, self.multiplier, 1, cap)
        upper = max(upper, base)
        delay = min(base + (upper - base) * self.rng(), cap)
        self.previous = delay
        return delay

    def reset(self) -> None:
        self.previous = 0.0


class Fibonacci(Strategy):
    """fib(n) * base_delay with fib = 1, 1, 2, 3, 5, ..."""

    name = "fibonacci"

    def __init__(self, base_delay: float = 1.0, max_delay: float = DEFAULT_MAX_DELAY) -> None:
        super().__init__(max_delay)
        _check_positive(base_delay=base_delay)
        self.base_delay = base_delay

    def next_delay(self, attempt: int) -> float:
        base, cap = self.base_delay, self.max_delay
        if base <= 0.0:
            return 0.0
        previous, current = 0.0, 1.0  # floats: they saturate at inf instead of raising
        for _ in range(attempt - 1):
            if current * base >= cap:
                return cap
            previous, current = current, previous + current
        return min(current * base, cap)


class Polynomial(Strategy):
    """base_delay * n^exponent."""

    name = "polynomial"

    def __init__(
        self,
        base_delay: float = 1.0,
        exponent: float = 2.0,
        max_delay: float = DEFAULT_MAX_DELAY,
    ) -> None:
        super().__init__(max_delay)
        _check_positive(base_delay=base_delay, exponent=exponent)
        self.base_delay = base_delay
        self.exponent = exponent

    def next_delay(self, attempt: int) -> float:
        return _grow(self.base_delay, attempt, self.exponent, self.max_delay)


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"{name} must be 0 or more, got {value}")


_CLASSES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Fixed, Exponential, Linear, Jitter, DecorrelatedJitter, Fibonacci, Polynomial)
}


def make_strategy(name: str, **params: object) -> Strategy:
    """Build a plain backoff by name or alias with keyword parameters (defaults as above)."""
    canonical = STRATEGY_NAMES.get(name, name)
    cls = _CLASSES.get(canonical)
    if cls is None:
        known = ", ".join(sorted(_CLASSES))
        raise ValueError(f'"{name}" is not a backoff strategy (one of {known})')
    return cls(**params)  # type: ignore[arg-type]


# Declarations ---------------------------------------------------------------------------
# Each strategy declares its name, aliases, summary and parameters once, here beside its
# maths. `patience` and `rpr` build their flags, help and validation from these, and the
# docs' parameter table is made from them (`python -m patience.backoff`), so the two tools
# cannot disagree on a name, a default or a bound.


BASE_DELAY = Param("base_delay", "duration", 1.0, "the first delay", low=0.0, low_open=True)
MAX_DELAY = Param(
    "max_delay", "duration", DEFAULT_MAX_DELAY, "no delay is longer", low=0.0, low_open=True
)
MULTIPLIER = Param("multiplier", "number", 2.0, "growth factor per attempt", low=1.0, high=100.0)
FALLBACK = Param(
    "fallback", "strategy", "exponential", "the backoff used when there is nothing better to go on"
)
_FALLBACK_BASE = BASE_DELAY.but(help="the fallback's first delay")

DECLARATIONS: dict[str, Declaration] = {
    d.name: d
    for d in (
        Declaration(
            "fixed",
            ["fix"],
            "the same delay every time",
            [Param("delay", "duration", 1.0, "wait DUR between attempts", low=0.0)],
        ),
        Declaration(
            "exponential",
            ["exp"],
            "base-delay × multiplier^(n-1)",
            [BASE_DELAY, MULTIPLIER, MAX_DELAY],
        ),
        Declaration(
            "linear",
            ["lin"],
            "n × increment",
            [
                Param(
                    "increment",
                    "duration",
                    1.0,
                    "added to the delay after each failed attempt",
                    low=0.0,
                    low_open=True,
                ),
                MAX_DELAY,
            ],
        ),
        Declaration(
            "jitter",
            ["jit"],
            "random in [0, base-delay × multiplier^(n-1))",
            [BASE_DELAY, MULTIPLIER, MAX_DELAY],
        ),
        Declaration(
            "decorrelated-jitter",
            ["dj"],
            "base-delay + random up to multiplier × the previous delay",
            [BASE_DELAY, MULTIPLIER.but(default=3.0), MAX_DELAY],
        ),
        Declaration(
            "fibonacci",
            ["fib"],
            "fib(n) × base-delay (1, 1, 2, 3, 5, ...)",
            [BASE_DELAY, MAX_DELAY],
        ),
        Declaration(
            "polynomial",
            ["poly"],
            "base-delay × n^exponent",
            [
                BASE_DELAY,
                Param(
                    "exponent",
                    "number",
                    2.0,
                    "power of the attempt number",
                    low=0.0,
                    low_open=True,
                    high=10.0,
                ),
                MAX_DELAY,
            ],
        ),
        Declaration(
            "http-aware",
            ["ha"],
            "wait as long as the server asks (Retry-After, X-RateLimit-*, JSON retry_after)",
            [
                FALLBACK,
                MAX_DELAY.but(default=1800.0, help="cap on any wait, the server's included"),
                _FALLBACK_BASE,
            ],
            plain=False,
        ),
        Declaration(
            "adaptive",
            ["adapt"],
            "learn across runs which delays work for this command",
            [
                Param(
                    "learning_rate",
                    "number",
                    0.1,
                    "how fast each outcome moves the estimate",
                    low=0.001,
                    high=1.0,
                ),
                Param(
                    "memory_window",
                    "whole",
                    50,
                    "outcomes remembered per command",
                    low=1,
                    high=10000,
                ),
                FALLBACK,
                _FALLBACK_BASE,
                MAX_DELAY,
            ],
            plain=False,
        ),
        Declaration(
            "diophantine",
            ["dioph", "dio"],
            "attempts at planned offsets, never above a rate limit",
            [
                Param("rate_limit", "whole", 100, "at most N attempts in any window", low=1),
                Param(
                    "window",
                    "duration",
                    3600.0,
                    "the sliding window of the rate limit",
                    low=0.0,
                    low_open=True,
                ),
                Param(
                    "retry_offsets",
                    "offsets",
                    "0,10m,30m",
                    "when each attempt is planned, from the start",
                ),
            ],
            plain=False,
        ),
    )
}

# Every strategy name and alias the `patience` command line accepts, to its canonical name.
STRATEGY_NAMES = {name: d.name for d in DECLARATIONS.values() for name in (d.name, *d.aliases)}
PLAIN = tuple(d.name for d in DECLARATIONS.values() if d.plain)


def parameter_table() -> str:
    """The docs' table of every strategy's parameters, made from the declarations."""
    from patience.durations import format_duration

    def shown(p: Param) -> str:
        if p.kind == "duration" and isinstance(p.default, float):
            return format_duration(p.default)
        return str(p.default)

    rows = [
        f"| `{d.name}` | `{p.flag}` | {p.kind} | {shown(p)} | {p.bounds()} | {p.help} |"
        for d in DECLARATIONS.values()
        for p in d.params
    ]
    head = (
        "| strategy | parameter | type | default | allowed | meaning |\n|---|---|---|---|---|---|"
    )
    return "\n".join([head, *rows]) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(parameter_table())
