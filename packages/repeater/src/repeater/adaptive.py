"""The adaptive mode: an interval that backs off when the command struggles (AIMD).

Slow or failed runs double the interval, healthy ones shorten it by a tenth of the base;
sustained failure opens a circuit that waits the longest interval and probes. The rule in
full, as `rpr adaptive --help` states it, is ADAPTIVE_RULE in repeater.adaptive_modes
(kept there, with the options it names, so that rpr's start-up does not import this module).
"""

from __future__ import annotations

from repeater.schedules import Schedule

__all__ = ["NOISE", "WEIGHT", "WINDOW", "Adaptive"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.schedules import Outcome


WINDOW = 10  # runs over which the failure rate is measured
WEIGHT = 0.2  # weight of the newest duration in the usual duration
NOISE = 0.01  # seconds: run time jitter of a quick command (process start-up, scheduling)


class Adaptive(Schedule):
    """ADAPTIVE_RULE, with the clock injected: `now` is the runner's monotonic clock."""

    sequential = True

    def __init__(
        self,
        base: float,
        min_interval: float,
        max_interval: float,
        slow_threshold: float = 2.0,
        fast_threshold: float = 0.5,
        failure_threshold: float = 0.3,
        immediate: bool = True,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.base = base
        self.min_interval = min_interval
        self.max_interval = max_interval
        self.slow_threshold = slow_threshold
        self.fast_threshold = fast_threshold
        self.failure_threshold = failure_threshold
        self.immediate = immediate
        self.report = report
        self.interval = base
        self.usual: float | None = None
        self.recent: list[bool] = []  # True for a failed run, newest last, at most WINDOW
        self.circuit = "closed"  # "open": the next run is the probe
        self.due = 0.0

    def first(self, now: float) -> float:
        self.due = now if self.immediate else now + self.interval
        return self.due

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        if outcome is None:
            change = "no outcome"
        elif self.circuit == "open":
            change = self._after_probe(outcome)
        else:
            change = self._adapt(outcome)
        wait = self.max_interval if self.circuit == "open" else self.interval
        self.due = max(now, self.due + wait)
        if self.report is not None:
            self.report(self.metrics(change))
        return self.due

    def _adapt(self, outcome: Outcome) -> str:
        self.recent = [*self.recent[-(WINDOW - 1) :], not outcome.success]
        usual = self.usual
        if outcome.success:
            self.usual = (
                outcome.duration
                if usual is None
                else (1 - WEIGHT) * usual + WEIGHT * outcome.duration
            )
        if sum(self.recent) > self.failure_threshold * WINDOW:
            self.circuit = "open"
            return "circuit opened"
        if not outcome.success:
            return self._increase("failed")
        if usual is None or abs(outcome.duration - usual) < NOISE:
            return self._decrease("ok", self.base)
        if outcome.duration > self.slow_threshold * usual:
            return self._increase("slow")
        if outcome.duration < self.fast_threshold * usual:
            return self._decrease("fast", self.min_interval)
        return self._decrease("ok", self.base)

    def _after_probe(self, outcome: Outcome) -> str:
        if not outcome.success:
            return "probe failed"
        self.circuit = "closed"
        self.recent = []
        self.interval = self.base
        self.usual = outcome.duration
        return "probe succeeded, circuit closed"

    def _increase(self, why: str) -> str:
        self.interval = min(self.interval * 2, self.max_interval)
        return why

    def _decrease(self, why: str, floor: float) -> str:
        if self.interval > floor:
            self.interval = max(self.interval - self.base / 10, floor)
        return why

    def metrics(self, change: str) -> str:
        """One line for --show-metrics."""
        from patience.durations import format_duration

        usual = format_duration(self.usual) if self.usual is not None else "n/a"
        state = "open, next run probes" if self.circuit == "open" else "closed"
        return (
            f"rpr: adaptive: {change}; interval {format_duration(self.interval)}, usual "
            f"duration {usual}, failures {sum(self.recent)}/{len(self.recent)}, "
            f"circuit {state}\n"
        )
