"""The protocol-1.0 schedule decision: do these planned attempts fit, and if not, how late?

The Go `patience diophantine --daemon` sends the times it plans to run at; the daemon holds
the times already registered for that resource. The planned times fit when no half-open
window [a, a + window) holds more than `limit` of all the times. If they do not, the answer
is the smallest delay that makes them fit, computed exactly (the Go tool stepped by whole
seconds until something fitted, which overshoots and can loop for a long time).

How it is computed. Let c_R(x) and c_P(x) count registered and planned times in [x, x + W).
Shifting the plan by d overfills a window holding a planned time when, for some k >= 1,
c_P(y) >= k and c_R(y + d) >= limit + 1 - k. Both level sets are unions of runs (lo, hi], and
a planned run a with a registered run b makes the shifts (b_lo - a_hi, b_hi - a_lo) bad; the
answer is the first point at or after 0 outside all of them. The arithmetic is exact: every
float is a fraction with a power-of-two denominator, so all times are scaled to integers first.

Cost. The runs of all levels together number at most the times (a run starts where a count
rises), so one pass finds them. The bad shifts, up to n·m of them, are never listed: each
planned run walks the registered runs of its level in order (a binary search skips those
already passed), a heap merges the walks, and the search stops at the first free shift. That
is O((n + m) log(n + m)) plus a log per bad interval passed before the answer. Only contrived
inputs make that count large (registered times laid out so that the shifted plan meets a
different one at every shift, for a long way); so after SEARCH_STEPS_PER_TIME · (n + m) steps
the search settles for the first shift that puts the whole plan, a window either side, where
nothing is registered: it surely fits, it may be later than the least. A step passes one
interval, so with at most 16 planned (or registered) times the answer is always the least.

One deliberate difference from the Go check: windows holding only registered times do not
count against the plan. Registered times that already overfill a window (two clients that
were both told "fits" before either registered) would otherwise refuse every plan forever.
"""

from __future__ import annotations

from bisect import bisect_right
from heapq import heapify, heappop, heapreplace
from itertools import pairwise

from patience.ratelimit.algorithms import RateLimitError

__all__ = ["SEARCH_STEPS_PER_TIME", "check_schedule"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    Segments = list[tuple[int, int, int]]  # (lo, hi, count): count holds on (lo, hi]
    Intervals = list[tuple[int, int]]
    Walk = tuple[int, int, list[int], list[int]]  # a planned run (lo, hi], registered runs' ends

# The steps the search for the least shift may take per registered or planned time before it
# settles for a shift that surely fits (see "Cost" above).
SEARCH_STEPS_PER_TIME = 16


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
    planned_times = sorted(_scaled(v, scale) for v in planned)
    planned_levels = _levels(planned_times, span)
    crowd = max(count for _, _, count in planned_levels)
    if crowd > limit:
        from patience.durations import format_duration

        raise RateLimitError(
            f"{crowd} planned attempts fall within one {format_duration(window)} window but the"
            f" limit is {limit}: no delay can make them fit (space them out or raise the limit)"
        )
    registered_times = sorted(_scaled(v, scale) for v in registered)
    walks = _walks(_levels(registered_times, span), planned_levels, limit, crowd)
    budget = SEARCH_STEPS_PER_TIME * (len(registered) + len(planned))
    start = 0
    while True:
        exact = _first_free(walks, start, budget)
        if exact is None:
            exact = _clear_stretch(registered_times, planned_times, span, start)
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


def _runs(segments: Segments, wanted: range) -> dict[int, Intervals]:
    """For each threshold t in `wanted`: the x where the count is >= t, as maximal runs (lo, hi].

    One pass: a run at or above t opens where the count rises to t and closes where it falls
    below, so the work is the total rise of the count (at most the number of points).
    """
    runs: dict[int, Intervals] = {}
    opened: list[int] = []  # opened[t - 1]: where the current run at or above t began
    end = segments[0][0] if segments else 0
    for lo, hi, count in segments:
        if lo != end:  # the count was 0 in between
            _close(runs, opened, 0, end, wanted)
        _close(runs, opened, count, lo, wanted)
        opened.extend([lo] * (count - len(opened)))
        end = hi
    _close(runs, opened, 0, end, wanted)
    return runs


def _close(
    runs: dict[int, Intervals], opened: list[int], level: int, at: int, wanted: range
) -> None:
    """End at `at` the runs of the thresholds above `level`."""
    while len(opened) > level:
        threshold = len(opened)
        lo = opened.pop()
        if threshold in wanted:
            runs.setdefault(threshold, []).append((lo, at))


def _walks(registered: Segments, planned: Segments, limit: int, crowd: int) -> list[Walk]:
    """The bad shifts as walks, one per planned run a at a level k: the shifts
    (b_lo - a_hi, b_hi - a_lo) for each registered run b at level limit + 1 - k, in order.

    Runs b closer together than every planned run of the level is long make overlapping bad
    shifts for each of them, so they are joined first: fewer steps, the same union.
    """
    planned_runs = _runs(planned, range(1, crowd + 1))
    registered_runs = _runs(registered, range(limit + 1 - crowd, limit + 1))
    walks: list[Walk] = []
    for k, plan in planned_runs.items():
        crowded = registered_runs.get(limit + 1 - k)
        if not crowded:
            continue
        los, his = _joined(crowded, min(hi - lo for lo, hi in plan))
        walks.extend((a_lo, a_hi, los, his) for a_lo, a_hi in plan)
    return walks


def _joined(runs: Intervals, gap: int) -> tuple[list[int], list[int]]:
    """The runs with those less than `gap` apart joined, as their lower and upper ends."""
    los, his = [runs[0][0]], [runs[0][1]]
    for lo, hi in runs[1:]:
        if lo - his[-1] < gap:
            his[-1] = hi
        else:
            los.append(lo)
            his.append(hi)
    return los, his


def _first_free(walks: list[Walk], start: int, budget: int) -> int | None:
    """The least d >= start inside none of the walks' open intervals, or None when the search
    would take more than `budget` steps.

    A heap holds each walk's next interval by its lower end; every shift below `shift` is
    known to be bad, and an interval starting below it extends that to its upper end.
    """
    heap = []
    for number, (a_lo, a_hi, los, his) in enumerate(walks):
        at = bisect_right(his, start + a_lo)
        if at < len(his):
            heap.append((los[at] - a_hi, number, at))
    heapify(heap)
    shift = start
    for _ in range(budget):
        if not heap or heap[0][0] >= shift:
            return shift
        _, number, at = heap[0]
        a_lo, a_hi, los, his = walks[number]
        shift = max(shift, his[at] - a_lo)
        at = bisect_right(his, shift + a_lo, at + 1)
        if at < len(his):
            heapreplace(heap, (los[at] - a_hi, number, at))
        else:
            heappop(heap)
    return None


def _clear_stretch(registered: list[int], planned: list[int], span: int, start: int) -> int:
    """The least d >= start that puts the whole plan, a window either side, where nothing is
    registered: a shift that surely fits, found in one pass, for when the exact search is
    cut short."""
    shift = start
    for r in registered[bisect_right(registered, planned[0] + start - span) :]:
        if r >= planned[-1] + shift + span:
            break
        shift = r - planned[0] + span
    return shift
