"""Backoff strategies: how long to wait after the n-th failed attempt.

Pure and clock-free: a strategy maps an attempt number (1-based) to a delay in seconds,
remembering what it must (decorrelated jitter remembers its previous delay). Randomness
comes from an injectable `rng` returning uniform floats in [0, 1), so tests are exact.
Every delay lies in [0, max_delay] at any attempt number: growth is computed so that it
saturates at the cap instead of overflowing to inf, NaN or a negative number.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

# Every strategy name and alias the `patience` command line accepts, to its canonical name.
# The first seven are plain backoffs built by `make_strategy`; the last three wrap one of them.
STRATEGY_NAMES = {
    "fixed": "fixed",
    "fix": "fixed",
    "exponential": "exponential",
    "exp": "exponential",
    "linear": "linear",
    "lin": "linear",
    "jitter": "jitter",
    "jit": "jitter",
    "decorrelated-jitter": "decorrelated-jitter",
    "dj": "decorrelated-jitter",
    "fibonacci": "fibonacci",
    "fib": "fibonacci",
    "polynomial": "polynomial",
    "poly": "polynomial",
    "http-aware": "http-aware",
    "ha": "http-aware",
    "adaptive": "adaptive",
    "adapt": "adaptive",
    "diophantine": "diophantine",
    "dioph": "diophantine",
    "dio": "diophantine",
}

DEFAULT_MAX_DELAY = 60.0


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
