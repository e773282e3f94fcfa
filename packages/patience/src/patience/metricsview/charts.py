"""Compact terminal charts: Unicode sparklines for a trend, and the arithmetic that fits a
series of points into the width of a terminal (merging neighbours, their histograms summed, so
a merged point's percentiles are estimated as the daemon's are)."""

from __future__ import annotations

from collections.abc import Sequence

from patience.daemon.histogram import merge, percentile

__all__ = ["BLOCKS", "fit", "sparkline"]

BLOCKS = "▁▂▃▄▅▆▇█"

Point = dict[str, object]


def sparkline(values: Sequence[float | None], low: float | None = None) -> str:
    """One block character per value, scaled from `low` (default: the smallest value) to the
    largest; a missing value is a space, and a flat series sits on the lowest block."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    bottom = min(present) if low is None else low
    span = max(present) - bottom
    top = len(BLOCKS) - 1
    return "".join(
        " "
        if v is None
        else BLOCKS[0 if span <= 0 else max(0, min(top, round((v - bottom) / span * top)))]
        for v in values
    )


def fit(points: Sequence[Point], width: int) -> list[Point]:
    """At most `width` points: runs of ceil(len/width) neighbours merged into one (counts
    added, histograms merged, percentiles estimated again). Each point needs `histogram`."""
    if width <= 0 or len(points) <= width:
        return list(points)
    size = -(-len(points) // width)
    return [_merged(points[i : i + size]) for i in range(0, len(points), size)]


def _merged(group: Sequence[Point]) -> Point:
    histogram = merge(_counts(p["histogram"]) for p in group)
    runs = sum(_int(p["runs"]) for p in group)
    successes = sum(_int(p["successes"]) for p in group)
    return {
        "time": group[0]["time"],
        "runs": runs,
        "successes": successes,
        "failures": runs - successes,
        "success_rate": successes / runs if runs else None,
        "duration_p50": percentile(histogram, 0.5),
        "duration_p95": percentile(histogram, 0.95),
        "histogram": histogram,
    }


def _counts(value: object) -> list[int]:
    assert isinstance(value, list)
    return [int(v) for v in value]


def _int(value: object) -> int:
    assert isinstance(value, int)
    return value
