"""The load-adaptive mode: run less often while the host is busy, more often when idle.

The interval is the base interval scaled by the most loaded of CPU, memory and load average
against their targets. The rule in full, as `rpr load-adaptive --help` states it, is
LOAD_RULE in repeater.adaptive_modes.
"""

from __future__ import annotations

from repeater.schedules import Schedule

__all__ = ["LoadAdaptive"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from patience.hostload import HostLoad
    from repeater.schedules import Outcome


class LoadAdaptive(Schedule):
    """LOAD_RULE, with the host's readings injected through `host`."""

    def __init__(
        self,
        base: float,
        host: HostLoad,
        target_cpu: float = 70.0,
        target_memory: float = 80.0,
        target_load: float = 1.0,
        min_interval: float | None = None,
        max_interval: float | None = None,
        immediate: bool = True,
        report: Callable[[str], None] | None = None,
    ) -> None:
        self.base = base
        self.host = host
        self.targets = (target_cpu, target_memory, target_load)
        self.min_interval = base / 10 if min_interval is None else min_interval
        self.max_interval = base * 10 if max_interval is None else max_interval
        self.immediate = immediate
        self.report = report
        self.interval = base
        self.due = 0.0

    def first(self, now: float) -> float:
        self.host.cpu_used()  # the first reading: CPU use is a rate between two
        self.due = now if self.immediate else now + self.base
        return self.due

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        self.interval = self.measure()
        self.due = max(now, self.due + self.interval)
        return self.due

    def measure(self) -> float:
        """The interval the host's load calls for now."""
        readings = self.host.readings()
        ratio = self.host.ratio(self.targets, readings)
        factor = 1.0 if ratio is None else ratio
        interval = min(max(self.base * factor, self.min_interval), self.max_interval)
        if self.report is not None:
            self.report(self._metrics(readings, factor, interval))
        return interval

    def _metrics(self, readings: tuple[float | None, ...], factor: float, interval: float) -> str:
        from patience.durations import format_duration

        cpu, memory, load = (
            "n/a" if r is None else f"{r:.{p}f}{u}"
            for r, p, u in zip(readings, (0, 0, 2), ("%", "%", ""), strict=True)
        )
        return (
            f"rpr: load-adaptive: cpu {cpu}, memory {memory}, load/core {load}; "
            f"factor {factor:.2f}, interval {format_duration(interval)}\n"
        )
