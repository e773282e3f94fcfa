"""When is the next run due: each mode of rpr as a schedule over the monotonic clock.

A schedule is pure: the runner passes the current time in, the schedule answers with an
absolute due time. Fixed-rate schedules keep a nominal tick chain (start + k * period), so
the interval never drifts with run time, and jitter moves a run without moving the chain.
"""

from __future__ import annotations

__all__ = [
    "OVERRUN_POLICIES",
    "BackToBack",
    "FixedRate",
    "Outcome",
    "RetryPattern",
    "Schedule",
    "Wrapped",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

OVERRUN_POLICIES = ("skip", "burst", "delay")


class Outcome:
    """What the runner tells a schedule about the run that just ended."""

    __slots__ = ("duration", "hint", "status", "success")

    def __init__(
        self, success: bool, duration: float, status: int, hint: float | None = None
    ) -> None:
        self.success = success
        self.duration = duration
        self.status = status
        self.hint = hint  # a server's retry hint in seconds (Retry-After and kin), if any


class Schedule:
    """Base: `first` gives the first due time, `next` each later one (None: no more runs).

    `sequential` schedules need each run's outcome before they can answer, so they cannot
    have several runs in flight.
    """

    sequential = False
    skipped = 0

    def first(self, now: float) -> float:
        return now

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        return now


class BackToBack(Schedule):
    """The next run starts as soon as the previous one ends (count/duration without --every)."""


class FixedRate(Schedule):
    """One run every `period` seconds on a fixed phase, with an overrun policy.

    `now` passed to `next` is when the runner is ready to start another run: the end of the
    previous run (one at a time) or the moment a slot freed (parallel). If that is past the
    next tick, the run overran:
      skip  - the ticks that passed are dropped and counted; the phase is kept;
      burst - every missed tick is run, back to back, until caught up;
      delay - the next run starts now and the phase moves to now.
    """

    def __init__(
        self,
        period: float,
        policy: str = "skip",
        immediate: bool = True,
        jitter: Callable[[], float] | None = None,
    ) -> None:
        self.period = period
        self.policy = policy
        self.immediate = immediate
        self.jitter = jitter
        self.nominal = 0.0
        self.skipped = 0

    def first(self, now: float) -> float:
        self.nominal = now if self.immediate else now + self.period
        return self._due()

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        tick = self.nominal + self.period
        if now > tick and self.policy != "burst":
            if self.policy == "skip":
                missed = int((now - tick) / self.period) + 1
                tick += missed * self.period
                self.skipped += missed
            else:
                tick = now
        self.nominal = tick
        return self._due()

    def _due(self) -> float:
        return self.nominal + (self.jitter() if self.jitter else 0.0)


class Wrapped(Schedule):
    """A schedule that adjusts the due times of another (`inner`): HTTP hints, --show-next."""

    def __init__(self, inner: Schedule) -> None:
        self.inner = inner
        self.sequential = inner.sequential

    def first(self, now: float) -> float:
        return self.inner.first(now)

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        due = self.inner.next(now, outcome)
        self.skipped = self.inner.skipped
        return due


class RetryPattern(Schedule):
    """After a failed run, retry at fixed offsets from the first failure of the streak
    (`--retry-pattern 0,10m,30m`: at once, 10 minutes later, 30 minutes later); a success,
    or the end of the pattern, returns to the inner schedule."""

    sequential = True

    def __init__(self, inner: Schedule, offsets: list[float]) -> None:
        self.inner = inner
        self.offsets = offsets
        self.streak_start: float | None = None
        self.used = 0

    @property
    def skipped(self) -> int:  # type: ignore[override]  # the inner schedule counts them

        return self.inner.skipped

    def first(self, now: float) -> float:
        return self.inner.first(now)

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        due = self.inner.next(now, outcome)
        if outcome is None or outcome.success:
            self.streak_start, self.used = None, 0
            return due
        if self.streak_start is None:
            self.streak_start = now
        if self.used < len(self.offsets):
            self.used += 1
            return self.streak_start + self.offsets[self.used - 1]
        return due
