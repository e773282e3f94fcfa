"""When rpr stops: run counts, a deadline, success/failure conditions.

By default failures do not stop rpr. `--for` is checked before each run (no run starts
after the deadline; a run in flight finishes). Conditions on a run's result are checked
after it; extra conditions (`until` objects) may also look at the run's output.
"""

from __future__ import annotations

__all__ = ["StopConditions", "Until"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.attempt import Attempt
    from patience.process import Sink


class Until:
    """A condition on a run's output or the wall clock; `sink` returns what must see output."""

    def sink(self) -> Sink | None:
        return None

    def met(self, record: Attempt) -> bool:
        raise NotImplementedError


class StopConditions:
    def __init__(
        self,
        times: int | None = None,
        deadline: float | None = None,
        until_success: bool = False,
        max_failures: int | None = None,
        until: list[Until] | None = None,
    ) -> None:
        self.times = times
        self.deadline = deadline
        self.until_success = until_success
        self.max_failures = max_failures
        self.until = until or []
        self.failures = 0
        self.reason: str | None = None
        self.goal_met = False  # --until-success was satisfied: rpr exits 0

    def may_start(self, started: int, due: float) -> bool:
        """Whether run number `started + 1` may start at `due`."""
        if self.reason is not None:
            return False
        if self.times is not None and started >= self.times:
            self.reason = f"{self.times} runs done"
            return False
        if self.deadline is not None and due > self.deadline:
            self.reason = "duration reached"
            return False
        return True

    def after(self, record: Attempt) -> None:
        """Record one finished run; sets `reason` when rpr must stop."""
        if not record.success:
            self.failures += 1
        if self.reason is not None:
            return
        if self.until_success and record.success:
            self.goal_met = True
            self.reason = "a run succeeded"
        elif self.max_failures is not None and self.failures >= self.max_failures:
            self.reason = f"{self.failures} failed runs"
        else:
            for cond in self.until:
                if cond.met(record):
                    self.reason = "stop condition met"
                    break
