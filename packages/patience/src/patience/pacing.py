"""When patience starts each attempt: the ten strategies as deadlines on the monotonic clock.

Seven strategies are a plain backoff (backoff.py). The other three wrap one:
http-aware prefers the server's hint, adaptive blends in what earlier runs learned, and
diophantine follows a planned set of offsets through a rate limiter.
"""

from __future__ import annotations

from patience.httpaware import hint_delay

__all__ = ["Adaptive", "Backoff", "Diophantine", "HttpAware", "Pacing"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from patience.backoff import Strategy
    from patience.learning import Memory
    from patience.ratelimit.algorithms import Limiter


class Pacing:
    """Base: `first` gives the first attempt's start, `next` the start after a failure.

    `admit(now)` is asked right before an attempt starts: None lets it start, a later time
    means "not yet" (a rate limit). `observe` hears whether each attempt succeeded;
    `finish` returns warnings for the user once the run is over. `note` says why the
    last delay is what it is, when that is not the strategy's formula.
    """

    wants_hint = False
    note = ""

    def first(self, now: float) -> float:
        return now

    def next(self, attempt: int, now: float, hint: float | None) -> float:
        raise NotImplementedError

    def admit(self, now: float) -> float | None:
        return None

    def observe(self, success: bool) -> None:
        """Only the adaptive strategy learns from outcomes."""

    def finish(self) -> list[str]:
        return []


class Backoff(Pacing):
    """Wait the strategy's delay after each failed attempt."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy

    def next(self, attempt: int, now: float, hint: float | None) -> float:
        return now + self.strategy.next_delay(attempt)


class HttpAware(Pacing):
    """The server's hint when the output has one, else the fallback; capped at max_delay."""

    wants_hint = True

    def __init__(self, fallback: Strategy, max_delay: float) -> None:
        self.fallback = fallback
        self.max_delay = max_delay

    def next(self, attempt: int, now: float, hint: float | None) -> float:
        fallback = min(self.fallback.next_delay(attempt), self.max_delay)
        self.note = "" if hint is None else "server hint"
        return now + hint_delay(hint, fallback, max_delay=self.max_delay)


class Adaptive(Pacing):
    """The first retry waits what the memory of this command suggests (learning.py); each
    later retry doubles the previous wait. Without an opinion the fallback decides."""

    def __init__(self, fallback: Strategy, memory: Memory, path: str) -> None:
        self.fallback = fallback
        self.memory = memory
        self.path = path
        self.learned = False
        self.waited: float | None = None
        self.previous = 0.0

    def next(self, attempt: int, now: float, hint: float | None) -> float:
        delay = self.fallback.next_delay(attempt)
        if attempt == 1:
            suggestion = self.memory.suggest(delay)
            self.learned = suggestion is not None
            delay = delay if suggestion is None else suggestion
        elif self.learned:
            delay = 2.0 * self.previous
        self.previous = self.waited = delay = min(delay, self.fallback.max_delay)
        self.note = "learned" if self.learned else ""
        return now + delay

    def observe(self, success: bool) -> None:
        if self.waited is not None:
            self.memory.record(self.waited, success)
            self.waited = None

    def finish(self) -> list[str]:
        warning = self.memory.save(self.path)
        return [f"adaptive: {warning}"] if warning else []


class Diophantine(Pacing):
    """Attempts at planned offsets from the start, never more than the limiter allows.

    Attempt n is planned at start + offsets[n-1]; past the list, the last gap repeats.
    The limiter (a sliding-window log here) moves an attempt later when the window is full.
    """

    def __init__(self, offsets: Sequence[float], limiter: Limiter) -> None:
        self.offsets = list(offsets)
        self.limiter = limiter
        self.start = 0.0

    def planned(self, attempt: int) -> float:
        """Offset of attempt n (1-based) from the start."""
        offsets = self.offsets
        if attempt <= len(offsets):
            return offsets[attempt - 1]
        gap = offsets[-1] - offsets[-2] if len(offsets) > 1 else 0.0
        return offsets[-1] + gap * (attempt - len(offsets))

    def first(self, now: float) -> float:
        self.start = now
        return self.limiter.available_at(now + self.planned(1))

    def next(self, attempt: int, now: float, hint: float | None) -> float:
        due = max(now, self.start + self.planned(attempt + 1))
        allowed = self.limiter.available_at(due)
        self.note = f"rate limit {self.limiter.describe()}" if allowed > due else ""
        return allowed

    def admit(self, now: float) -> float | None:
        decision = self.limiter.acquire(now)
        return None if decision.granted else now + decision.retry_after
