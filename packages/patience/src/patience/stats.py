"""Streaming statistics in bounded memory: count, min, max, mean and percentiles.

Values go into logarithmic buckets 1% wide, so memory depends on the range of values
(at most a few thousand buckets from 1 µs to days), never on how many were recorded, and a
percentile is exact to within 1%.
"""

from __future__ import annotations

import math

__all__ = ["Distribution"]

_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
_FLOOR = 1e-6  # values below one microsecond share the lowest bucket


class Distribution:
    """Percentiles of non-negative values (seconds, typically)."""

    __slots__ = ("buckets", "count", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.total = 0.0
        self.minimum = math.inf
        self.maximum = 0.0

    def add(self, value: float) -> None:
        value = max(0.0, value)
        self.count += 1
        self.total += value
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)
        key = -1 if value < _FLOOR else int(math.log(value / _FLOOR) / _LOG_GROWTH)
        self.buckets[key] = self.buckets.get(key, 0) + 1

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def percentile(self, p: float) -> float:
        """The value below which p percent of the values lie (0 when empty)."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(p / 100.0 * self.count))
        seen = 0
        for key in sorted(self.buckets):
            seen += self.buckets[key]
            if seen >= rank:
                if key < 0:
                    return self.minimum
                # Midpoint of the bucket, clamped to what was really seen.
                mid = _FLOOR * math.exp((key + 0.5) * _LOG_GROWTH)
                return min(self.maximum, max(self.minimum, mid))
        return self.maximum
