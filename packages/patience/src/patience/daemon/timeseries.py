"""The `timeseries` query's arithmetic: which step and range a request means, its bounds, and
how rollup rows become series of points. Pure (no SQLite, the clock is a parameter).

A step of 1m or 5m is read from the minute rollups, 1h and 1d from the hour rollups, so a
point costs at most 24 rows whatever the number of runs behind it. Points are aligned to
multiples of the step (UTC days for 1d) and cover [time, time + step).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from patience.daemon.histogram import BUCKETS, merge, percentile
from patience.durations import format_duration

__all__ = [
    "AUTO_POINTS",
    "COUNTERS",
    "DEFAULT_RANGE",
    "GROUP_FIELDS",
    "MAX_POINTS",
    "MAX_RANGE",
    "MAX_SERIES",
    "STEPS",
    "Plan",
    "QueryError",
    "build_series",
    "choose_step",
    "make_plan",
]

STEPS = {"1m": 60, "5m": 300, "1h": 3600, "1d": 86400}
MINUTE, HOUR = 60, 3600  # the resolutions of the two rollup tiers
MAX_POINTS = 1500  # points per series (24 h at 1m is 1,440)
MAX_RANGE = 4 * 366 * 86400  # seconds one query may span: at 1d steps, within MAX_POINTS
MAX_SERIES = 1000  # (resource, tool) pairs one query may match
AUTO_POINTS = 720  # an automatic step is the finest giving at most this many points
DEFAULT_RANGE = 86400  # a query without start covers the day before its end
# What each grouping keeps apart: its series carry these fields.
GROUP_FIELDS: dict[str, tuple[str, ...]] = {
    "resource": ("resource_id",),
    "tool": ("tool",),
    "resource_tool": ("resource_id", "tool"),
    "none": (),
}
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}

# The summed columns of a rollup row, in order, after the histogram's buckets.
COUNTERS = (
    "runs",
    "successes",
    "duration_sum",
    "tokens_granted",
    "requests_refused",
    "requests_waited",
    "wait_seconds",
)


class QueryError(ValueError):
    """A query asking for more than its bounds, or for nothing; the message says which."""


class Plan(NamedTuple):
    """What one query reads: points from `start` to `end` (Unix seconds, multiples of `step`),
    from the rollup tier of `resolution` seconds."""

    start: int
    end: int
    step: int
    resolution: int

    @property
    def points(self) -> int:
        return (self.end - self.start) // self.step


def _aligned(start: float, end: float, step: int) -> tuple[int, int]:
    first = math.floor(start / step) * step
    return first, max(first + step, math.ceil(end / step) * step)


def choose_step(start: float, end: float, minute_horizon: float) -> int:
    """The finest step giving at most AUTO_POINTS points, and an hour or more when the range
    begins before `minute_horizon` (older minute rollups are gone)."""
    for step in STEPS.values():
        if step < HOUR and start < minute_horizon:
            continue
        first, last = _aligned(start, end, step)
        if (last - first) // step <= AUTO_POINTS:
            return step
    return STEPS["1d"]


def make_plan(
    start: float | None,
    end: float | None,
    step: str | None,
    now: float,
    minute_horizon: float,
) -> Plan:
    """The plan for a request, or QueryError naming the bound it breaks. An open end is `now`,
    an open start DEFAULT_RANGE before the end; `step` None chooses one (choose_step)."""
    end = now if end is None else end
    start = end - DEFAULT_RANGE if start is None else start
    if end <= start:
        raise QueryError(f"end ({end:g}) is not after start ({start:g}): give a later end")
    if end - start > MAX_RANGE:
        raise QueryError(
            f"a range of {format_duration(end - start)} is more than"
            f" {format_duration(MAX_RANGE)}: ask for a shorter range"
        )
    seconds = choose_step(start, end, minute_horizon) if step is None else STEPS[step]
    first, last = _aligned(start, end, seconds)
    points = (last - first) // seconds
    if points > MAX_POINTS:
        raise QueryError(
            f"{format_duration(end - start)} at {format_duration(seconds)} steps is {points}"
            f" points, more than {MAX_POINTS}: use a longer step or a shorter range"
        )
    if seconds < HOUR and start < minute_horizon:
        raise QueryError(
            f"step {format_duration(seconds)} reads the minute rollups, kept until"
            f" {format_duration(max(0.0, now - minute_horizon))} back; the range starts before:"
            " use a step of 1h or 1d, or a later start"
        )
    return Plan(first, last, seconds, MINUTE if seconds < HOUR else HOUR)


class Row(NamedTuple):
    """One aggregated rollup row: its group, its point's index, and its summed columns
    (the histogram's BUCKETS counts, then COUNTERS), and the latest run start."""

    key: tuple[str, ...]
    point: int
    values: Sequence[float]
    last_run: float | None


class _Point:
    __slots__ = ("counters", "exit_codes", "histogram", "last_run")

    def __init__(self) -> None:
        self.histogram = [0] * BUCKETS
        self.counters = [0.0] * len(COUNTERS)
        self.exit_codes: dict[str, int] = {}
        self.last_run: float | None = None

    @classmethod
    def total(cls, points: Sequence[_Point]) -> _Point:
        """All of `points` in one (the histograms merged)."""
        total = cls()
        total.histogram = merge(p.histogram for p in points)
        total.counters = [sum(column) for column in zip(*(p.counters for p in points), strict=True)]
        for point in points:
            for code, count in point.exit_codes.items():
                total.exit_codes[code] = total.exit_codes.get(code, 0) + count
        runs = [p.last_run for p in points if p.last_run is not None]
        total.last_run = max(runs) if runs else None
        return total

    def render(self, histogram: bool) -> dict[str, object]:
        figures = dict(zip(COUNTERS, self.counters, strict=True))
        runs, successes = int(figures.pop("runs")), int(figures.pop("successes"))
        duration_sum = figures.pop("duration_sum")
        point: dict[str, object] = {
            "runs": runs,
            "successes": successes,
            "failures": runs - successes,
            "success_rate": successes / runs if runs else None,
            "exit_codes": dict(sorted(self.exit_codes.items(), key=lambda kv: int(kv[0]))),
            "duration_mean": duration_sum / runs if runs else None,
        }
        for name, q in QUANTILES.items():
            point[f"duration_{name}"] = percentile(self.histogram, q)
        wait = figures.pop("wait_seconds")
        point.update({name: int(value) for name, value in figures.items()})
        point["wait_seconds"] = wait
        if histogram:
            point["histogram"] = list(self.histogram)
        return point


def build_series(
    plan: Plan,
    group_fields: Sequence[str],
    rows: Iterable[Row],
    exit_rows: Iterable[tuple[tuple[str, ...], int, int, int]],
    histogram: bool = False,
) -> list[dict[str, object]]:
    """One series per group seen in `rows`, each with every point of the plan (zeros where
    nothing happened) and its total over the range. `exit_rows` are (key, index, exit code,
    count); `group_fields` name the key's parts (resource_id, tool)."""
    groups: dict[tuple[str, ...], list[_Point]] = {}
    for row in rows:
        points = groups.get(row.key)
        if points is None:
            points = groups[row.key] = [_Point() for _ in range(plan.points)]
        point = points[row.point]
        values = row.values
        point.histogram = [int(v) for v in values[:BUCKETS]]
        point.counters = [float(v) for v in values[BUCKETS:]]
        point.last_run = row.last_run
    for key, index, code, count in exit_rows:
        if key in groups:
            codes = groups[key][index].exit_codes
            codes[str(code)] = codes.get(str(code), 0) + count
    series: list[dict[str, object]] = []
    for key in sorted(groups):
        points, total = groups[key], _Point.total(groups[key])
        rendered = [
            {"time": plan.start + index * plan.step, **point.render(histogram)}
            for index, point in enumerate(points)
        ]
        summary = total.render(histogram)
        summary["last_run"] = total.last_run
        series.append(
            {**dict(zip(group_fields, key, strict=True)), "total": summary, "points": rendered}
        )
    return series
