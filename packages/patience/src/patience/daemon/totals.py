"""Counters since the daemon started, for Prometheus's `/metrics`: executions by tool, resource
and outcome with a duration histogram, and rate-limit usage (tokens granted, requests refused,
requests that waited and their wait) by resource and tool.

Kept in memory and only ever added to, so a scrape reads them without touching the store and
they never go down while the daemon lives (a restart starts them again, which Prometheus's
`rate()` understands from the start time). Memory is bounded: at most `max_resources` resource
ids are kept as themselves, the first ones seen, for the daemon's life; every later one is
counted under `OTHER`, so a name never moves from one series to another.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence

from patience.daemon.protocol import ExecutionMetrics

__all__ = ["DURATION_BUCKETS", "OTHER", "Histogram", "LabelCap", "Totals", "Usage"]

OTHER = "other"
# Upper bounds in seconds (Prometheus's `le`), from a quick HTTP check to an hour-long job.
DURATION_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


class LabelCap:
    """Which resource ids are label values: the first `cap` seen; the rest are `OTHER`."""

    __slots__ = ("cap", "kept")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.kept: dict[str, None] = {}  # in the order first seen

    def label(self, resource_id: str) -> str:
        if resource_id in self.kept:
            return resource_id
        if len(self.kept) < self.cap:
            self.kept[resource_id] = None
            return resource_id
        return OTHER


class Histogram:
    """Counts per bucket (not cumulative; the last is above every bound), sum and count."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.count += 1
        self.total += seconds

    def cumulative(self) -> list[int]:
        """Counts at or under each bound, then the count (`+Inf`), as Prometheus wants them."""
        running, out = 0, []
        for count in self.buckets:
            running += count
            out.append(running)
        return out


class Usage:
    """Rate-limit usage of one resource by one tool."""

    __slots__ = ("granted", "refused", "wait_seconds", "waited")

    def __init__(self) -> None:
        self.granted = 0
        self.refused = 0
        self.waited = 0
        self.wait_seconds = 0.0


class Totals:
    """The counters; `resources` decides each resource id's label (shared with the gauges)."""

    def __init__(self, max_resources: int) -> None:
        self.resources = LabelCap(max_resources)
        self.executions: dict[tuple[str, str, bool], int] = {}  # (tool, resource, success)
        self.durations: dict[tuple[str, str], Histogram] = {}  # (tool, resource)
        self.usage: dict[tuple[str, str], Usage] = {}  # (resource, tool)

    def add_executions(self, records: Iterable[ExecutionMetrics]) -> None:
        """Records newly stored (a resent record is not counted again)."""
        for record in records:
            resource = self.resources.label(record.resource_id)
            key = (record.tool, resource, record.success)
            self.executions[key] = self.executions.get(key, 0) + 1
            histogram = self.durations.get((record.tool, resource))
            if histogram is None:
                histogram = self.durations[(record.tool, resource)] = Histogram()
            histogram.observe(record.duration)

    def add_usage(self, usage: Mapping[tuple[str, str], Sequence[float]]) -> None:
        """The coordinator's usage since its last flush: (resource, tool) -> granted, refused,
        waited, total wait in seconds."""
        for (resource_id, tool), (granted, refused, waited, wait_total) in usage.items():
            key = (self.resources.label(resource_id), tool)
            counters = self.usage.get(key)
            if counters is None:
                counters = self.usage[key] = Usage()
            counters.granted += int(granted)
            counters.refused += int(refused)
            counters.waited += int(waited)
            counters.wait_seconds += wait_total
