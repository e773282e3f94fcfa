"""The protocol-1.0 schedule decision: do these planned attempts fit, and if not, how late?

The Go `patience diophantine --daemon` sends the times it plans to run at; the daemon holds
the times already registered for that resource. The planned times fit when no half-open
window [a, a + window) holds more than `limit` of all the times. If they do not, the answer
is the smallest delay that makes them fit, computed exactly (the Go tool stepped by whole
seconds until something fitted, which overshoots and can loop for a long time).

How it is computed. Let c_R(x) and c_P(x) count registered and planned times in [x, x + W).
Shifting the plan by d overfills a window holding a planned time when, for some k >= 1,
c_P(y) >= k and c_R(y + d) >= limit + 1 - k. Both level sets are unions of intervals
(lo, hi], so the bad shifts are a union of open intervals (a - hi_P, b - lo_P); the answer
is the first point at or after 0 outside all of them. The arithmetic is exact: every float
is a fraction with a power-of-two denominator, so all times are scaled to integers first.

One deliberate difference from the Go check: windows holding only registered times do not
count against the plan. Registered times that already overfill a window (two clients that
were both told "fits" before either registered) would otherwise refuse every plan forever.
"""

from __future__ import annotations

from itertools import pairwise

from patience.ratelimit.algorithms import RateLimitError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    Segments = list[tuple[int, int, int]]  # (lo, hi, count): count holds on (lo, hi]
    Intervals = list[tuple[int, int]]


def check_schedule(
    registered: Sequence[float], planned: Sequence[float], limit: int, window: float
) -> float:
    """0.0 if `planned` fits beside `registered`, else the smallest float shift that makes it fit.

    Registered times must already be filtered by expiry. Raises RateLimitError when no
    shift can help: the planned times alone put more than `limit` in one window.
    """
    _check_arguments(registered, planned, limit, window)
    if not planned:
        return 0.0
    bits = max(_fraction_bits(v) for v in (*registered, *planned, window))
    scale = 1 << bits
    span = _scaled(window, scale)
    planned_levels = _levels(sorted(_scaled(v, scale) for v in planned), span)
    crowd = max(count for _, _, count in planned_levels)
    if crowd > limit:
        from patience.durations import format_duration

        raise RateLimitError(
            f"{crowd} planned attempts fall within one {format_duration(window)} window but the"
            f" limit is {limit}: no delay can make them fit (space them out or raise the limit)"
        )
    registered_levels = _levels(sorted(_scaled(v, scale) for v in registered), span)
    bad = _bad_shifts(registered_levels, planned_levels, limit, crowd)
    start = 0
    while True:
        exact = _first_free(bad, start)
        if exact == 0:
            return 0.0
        shift = exact / scale  # correctly rounded; bump it if it rounded down
        numerator, denominator = shift.as_integer_ratio()
        if numerator * scale < exact * denominator:
            import math

            shift = math.nextafter(shift, math.inf)
            numerator, denominator = shift.as_integer_ratio()
        if numerator * scale == exact * denominator:
            return shift
        # The float lies past the exact answer; it may sit in the next bad interval.
        start = -(-numerator * scale // denominator)


def _check_arguments(
    registered: Sequence[float], planned: Sequence[float], limit: int, window: float
) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise RateLimitError(f"rate limit {limit!r} is not a positive whole number")
    if not _is_finite(window) or not window > 0:
        raise RateLimitError(f"rate-limit window {window!r} is not a positive number of seconds")
    for name, times in (("registered", registered), ("planned", planned)):
        for value in times:
            if not _is_finite(value):
                raise RateLimitError(f"{name} time {value!r} is not a finite number of seconds")


def _is_finite(value: object) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and -1e300 < value < 1e300
    )


def _fraction_bits(value: float) -> int:
    """How many binary digits `value` has after the point (its denominator is 2**bits)."""
    return value.as_integer_ratio()[1].bit_length() - 1


def _scaled(value: float, scale: int) -> int:
    numerator, denominator = value.as_integer_ratio()
    return numerator * scale // denominator


def _levels(points: list[int], span: int) -> Segments:
    """c(x) = how many points lie in [x, x + span), as segments (lo, hi] of constant count.

    A point p counts for x in (p - span, p]; a count changes just after each such end.
    """
    changes: dict[int, int] = {}
    for p in points:
        changes[p - span] = changes.get(p - span, 0) + 1
        changes[p] = changes.get(p, 0) - 1
    edges = sorted(changes)
    segments: Segments = []
    count = 0
    for lo, hi in pairwise(edges):
        count += changes[lo]
        if count:
            segments.append((lo, hi, count))
    return segments


def _at_least(segments: Segments, threshold: int) -> Intervals:
    """The x where the count is >= threshold, as merged intervals (lo, hi]."""
    merged: Intervals = []
    for lo, hi, count in segments:
        if count < threshold:
            continue
        if merged and merged[-1][1] == lo:
            merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged


def _bad_shifts(registered: Segments, planned: Segments, limit: int, crowd: int) -> Intervals:
    """The open intervals of shifts d that overfill a window holding a planned time, by lo."""
    bad: Intervals = []
    for k in range(1, crowd + 1):
        crowded = _at_least(registered, limit + 1 - k)
        if not crowded:
            continue
        for plan_lo, plan_hi in _at_least(planned, k):
            for reg_lo, reg_hi in crowded:
                if reg_hi - plan_lo > 0:  # only shifts >= 0 matter
                    bad.append((reg_lo - plan_hi, reg_hi - plan_lo))
    bad.sort()
    return bad


def _first_free(bad: Intervals, start: int) -> int:
    """The least d >= start inside none of the open intervals (sorted by their lower end)."""
    shift = start
    for lo, hi in bad:
        if lo >= shift:
            break
        shift = max(shift, hi)
    return shift
