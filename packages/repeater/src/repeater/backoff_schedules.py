"""The backoff modes (exponential, linear, fibonacci, polynomial, decorrelated-jitter) as
rpr schedules. The delays come from `patience.backoff`; this module only decides which
step of the sequence applies and when the schedule ends (BACKOFF_RULE in
repeater.backoff_modes is the rule as the help text states it).
"""

from __future__ import annotations

from repeater.schedules import Schedule

__all__ = ["Backoff"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.backoff import Strategy
    from repeater.schedules import Outcome


class Backoff(Schedule):
    """Waits `strategy.next_delay(n)` after the n-th consecutive failure, the first delay
    after a success, and ends after `attempts` runs (None: never)."""

    sequential = True

    def __init__(self, strategy: Strategy, attempts: int | None, immediate: bool = True) -> None:
        self.strategy = strategy
        self.attempts = attempts
        self.immediate = immediate
        self.runs = 0
        self.failures = 0

    def first(self, now: float) -> float:
        return now if self.immediate else now + self.strategy.next_delay(1)

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        self.runs += 1
        if self.attempts is not None and self.runs >= self.attempts:
            return None
        if outcome is None or outcome.success:
            self.strategy.reset()
            self.failures = 0
        else:
            self.failures += 1
        return now + self.strategy.next_delay(max(self.failures, 1))
