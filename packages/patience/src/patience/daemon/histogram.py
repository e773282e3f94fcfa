"""Duration histograms with fixed log-spaced buckets: what the rollups keep of run durations.

Every rollup row counts its runs' durations in the same buckets, so two rows merge by adding
their counts (a 5-minute point is the sum of five minute rows, a tool's series the sum of its
resources'), and a percentile is estimated from the merged counts. The buckets grow by a factor
of √2 from 1 ms to about 18.6 h: an estimate lands in the bucket of the true value, so it is
within a factor √2 of it (usually much closer: it is interpolated inside the bucket).

Bucket 0 holds durations up to 1 ms, bucket k (1..52) those in (BOUNDS[k-1], BOUNDS[k]], and the
last bucket those above BOUNDS[-1].
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

__all__ = ["BOUNDS", "BUCKETS", "bucket_of", "bucket_range", "merge", "percentile"]

_FIRST = 0.001  # seconds: the upper bound of bucket 0
BOUNDS: tuple[float, ...] = tuple(_FIRST * 2 ** (i / 2) for i in range(53))
BUCKETS = len(BOUNDS) + 1  # the last one is open-ended


def bucket_of(duration: float) -> int:
    """The bucket a duration (seconds, >= 0) is counted in."""
    if duration <= _FIRST:
        return 0
    k = min(BUCKETS - 1, math.ceil(2 * math.log2(duration / _FIRST)))
    # The logarithm can land one off at a bound: settle against the bounds themselves.
    while k > 0 and duration <= BOUNDS[k - 1]:
        k -= 1
    while k < BUCKETS - 1 and duration > BOUNDS[k]:
        k += 1
    return k


def bucket_range(k: int) -> tuple[float, float]:
    """(lower, upper) of bucket k in seconds; the last bucket's upper is its lower (unknown)."""
    lower = 0.0 if k == 0 else BOUNDS[k - 1]
    upper = BOUNDS[k] if k < len(BOUNDS) else lower
    return lower, upper


def merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    """The bucket-wise sum: the histogram of all their runs together."""
    return [sum(column) for column in zip(*histograms, strict=True)] or [0] * BUCKETS


def percentile(counts: Sequence[int], q: float) -> float | None:
    """An estimate of the q-quantile (0 < q <= 1) of the counted durations, None when there are
    none. The bucket holding the value of rank ceil(q·n) is found, and the value placed inside
    it by its rank among the bucket's runs (geometrically, as the buckets are)."""
    total = sum(counts)
    if total == 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for k, count in enumerate(counts):
        if count and seen + count >= rank:
            lower, upper = bucket_range(k)
            fraction = (rank - seen) / count
            if k == 0:
                return upper * fraction
            return float(lower * (upper / lower) ** fraction)
        seen += count
    raise AssertionError("unreachable: the ranks add up to the total")
