"""The arithmetic of the rollups, pure: duration buckets, histogram merge and percentile
estimates, the timeseries query's step choice, alignment and bounds, the assembly of points,
and the terminal charts and time options of `patience metrics`."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.daemon.histogram import BOUNDS, BUCKETS, bucket_of, bucket_range, merge, percentile
from patience.daemon.timeseries import (
    MAX_POINTS,
    MAX_RANGE,
    STEPS,
    Plan,
    QueryError,
    Row,
    build_series,
    choose_step,
    make_plan,
)
from patience.metricsview.charts import BLOCKS, fit, sparkline
from patience.metricsview.timespec import moment

H, D = 3600, 86400
NOW = 1_800_000_000.0  # a Unix time; the clock is always a parameter
LONG_AGO = 0.0  # a minute horizon before every range: minute rollups all still kept

durations = st.floats(min_value=0, max_value=200_000, allow_nan=False)


def histogram(values: list[float]) -> list[int]:
    counts = [0] * BUCKETS
    for value in values:
        counts[bucket_of(value)] += 1
    return counts


# ---- buckets and percentiles ---------------------------------------------------------------


def test_buckets_are_log_spaced_from_a_millisecond() -> None:
    assert BOUNDS[0] == 0.001 and len(BOUNDS) + 1 == BUCKETS
    assert all(math.isclose(b / a, math.sqrt(2)) for a, b in itertools.pairwise(BOUNDS))
    assert bucket_of(0.0) == 0 and bucket_of(0.001) == 0 and bucket_of(0.0011) == 1
    assert bucket_of(BOUNDS[10]) == 10 and bucket_of(BOUNDS[10] * 1.0001) == 11
    assert bucket_of(1e9) == BUCKETS - 1


@given(durations)
def test_a_duration_lies_in_its_bucket(value: float) -> None:
    lower, upper = bucket_range(bucket_of(value))
    assert value >= lower
    assert value <= upper or bucket_of(value) == BUCKETS - 1


@given(durations, durations)
def test_buckets_keep_order(a: float, b: float) -> None:
    if a <= b:
        assert bucket_of(a) <= bucket_of(b)


@given(st.lists(durations, max_size=50), st.lists(durations, max_size=50))
def test_histograms_of_two_sets_merge_into_the_histogram_of_both(
    a: list[float], b: list[float]
) -> None:
    assert merge([histogram(a), histogram(b)]) == histogram(a + b)


@given(
    st.lists(st.floats(min_value=0.002, max_value=60_000), min_size=1, max_size=200),
    st.sampled_from([0.5, 0.9, 0.95, 0.99, 1.0]),
)
def test_a_percentile_estimate_is_within_its_bucket_of_the_true_value(
    values: list[float], q: float
) -> None:
    """The estimate lands in the bucket of the true (nearest-rank) value: within a factor √2."""
    true = sorted(values)[max(1, math.ceil(q * len(values))) - 1]
    estimate = percentile(histogram(values), q)
    assert estimate is not None
    lower, upper = bucket_range(bucket_of(true))
    assert lower <= estimate <= upper
    assert true / math.sqrt(2) <= estimate <= true * math.sqrt(2)


def test_percentile_of_nothing_is_none_and_of_one_bucket_grows_with_q() -> None:
    assert percentile([0] * BUCKETS, 0.5) is None
    counts = histogram([1.0] * 100)
    assert percentile(counts, 0.5) < percentile(counts, 0.99) <= bucket_range(bucket_of(1.0))[1]


# ---- steps, ranges and bounds ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "step"),
    [(15 * 60, 60), (H, 60), (12 * H, 60), (24 * H, 300), (7 * D, H), (30 * D, H), (365 * D, D)],
)
def test_the_automatic_step_is_the_finest_with_at_most_720_points(span: int, step: int) -> None:
    assert choose_step(NOW - span, NOW, LONG_AGO) == step
    plan = make_plan(NOW - span, NOW, None, NOW, LONG_AGO)
    assert plan.step == step and plan.points <= 721


def test_a_range_older_than_the_minute_rollups_gets_hour_steps() -> None:
    horizon = NOW - 30 * D
    assert choose_step(NOW - 31 * D, NOW - 31 * D + H, horizon) == H
    with pytest.raises(QueryError, match=r"step 5m reads the minute rollups, kept until 30d back"):
        make_plan(NOW - 31 * D, NOW - 31 * D + H, "5m", NOW, horizon)


def test_points_are_aligned_to_the_step_and_cover_the_range() -> None:
    plan = make_plan(NOW - 24 * H + 7, NOW + 7, "5m", NOW, LONG_AGO)
    assert plan.start % 300 == 0 and plan.end % 300 == 0 and plan.resolution == 60
    assert plan.start <= NOW - 24 * H + 7 and plan.end >= NOW + 7
    assert make_plan(NOW - 3 * D, NOW, "1d", NOW, LONG_AGO).start % D == 0
    assert make_plan(None, None, None, NOW, LONG_AGO).end >= NOW  # default: the last day


@given(
    st.floats(min_value=0, max_value=2e9),
    st.floats(min_value=1, max_value=MAX_RANGE),
    st.sampled_from([None, *STEPS]),
)
def test_every_plan_keeps_its_bounds_or_says_which_it_breaks(
    start: float, span: float, step: str | None
) -> None:
    try:
        plan = make_plan(start, start + span, step, start + span, LONG_AGO)
    except QueryError as exc:
        assert "points, more than 1500" in str(exc)
        assert step is not None
        return
    assert 1 <= plan.points <= MAX_POINTS
    assert plan.start <= start and plan.end >= start + span
    assert plan.start % plan.step == 0 and plan.end % plan.step == 0
    assert plan.resolution == (60 if plan.step < H else H)


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (NOW, NOW, None, "is not after start"),
        (NOW, NOW - 5, None, "is not after start"),
        (NOW - 2000 * D, NOW, None, "a range of 2000d is more than 1464d"),
        (NOW - 2 * D, NOW, "1m", "2d at 1m steps is 2880 points, more than 1500"),
        (NOW - 1000 * D, NOW, "1h", "points, more than 1500: use a longer step"),
    ],
)
def test_bad_ranges_are_refused_by_name(
    start: float, end: float, step: str | None, message: str
) -> None:
    with pytest.raises(QueryError, match=message):
        make_plan(start, end, step, NOW, LONG_AGO)


# ---- points --------------------------------------------------------------------------------


def test_series_have_every_point_and_a_total() -> None:
    plan = Plan(600, 1200, 300, 60)  # two points
    hist = [0] * BUCKETS
    hist[bucket_of(0.5)] = 3
    values = [*hist, 3, 2, 1.5, 4, 1, 2, 0.5]
    rows = [Row(("a",), 1, values, 950.0)]
    [series] = build_series(plan, ("resource_id",), rows, [(("a",), 1, 0, 2), (("a",), 1, 7, 1)])
    assert series["resource_id"] == "a"
    first, second = series["points"]
    assert first["time"] == 600 and first["runs"] == 0 and first["duration_p50"] is None
    assert second["time"] == 900 and second["runs"] == 3 and second["failures"] == 1
    assert second["exit_codes"] == {"0": 2, "7": 1} and second["duration_mean"] == 0.5
    assert (second["tokens_granted"], second["requests_refused"]) == (4, 1)
    assert (second["requests_waited"], second["wait_seconds"]) == (2, 0.5)
    total = series["total"]
    assert total["runs"] == 3 and total["last_run"] == 950.0 and total["success_rate"] == 2 / 3
    assert "histogram" not in total
    assert build_series(plan, ("resource_id",), [], []) == []


# ---- charts and time options ---------------------------------------------------------------


def test_sparklines_scale_from_the_low_mark_and_leave_gaps() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7], 0.0) == BLOCKS
    assert sparkline([None, 5.0, None], 0.0) == " █ "
    assert sparkline([2.0, 2.0]) == BLOCKS[0] * 2
    assert sparkline([]) == ""


def test_fitting_merges_neighbours_and_their_histograms() -> None:
    def point(t: int, runs: int, ok: int, duration: float) -> dict[str, object]:
        return {"time": t, "runs": runs, "successes": ok, "histogram": histogram([duration] * runs)}

    points = [point(i, 2, 1, 0.01 * (i + 1)) for i in range(10)]
    fitted = fit(points, 4)
    assert len(fitted) == 4 and [p["time"] for p in fitted] == [0, 3, 6, 9]
    assert [p["runs"] for p in fitted] == [6, 6, 6, 2]
    assert fitted[0]["success_rate"] == 0.5
    assert fitted[0]["duration_p95"] > fitted[0]["duration_p50"]
    assert fit(points, 20) == points


def test_since_and_until_read_durations_times_and_unix_seconds() -> None:
    assert moment("1h", NOW) == NOW - 3600
    assert moment("7d", NOW) == NOW - 7 * D
    assert moment("2026-12-01T10:00:00+00:00", NOW) == 1796119200.0
    assert moment("@1796119200", NOW) == 1796119200.0
    for bad in ("yesterday", "@x", "@-5", "1 hour", ""):
        with pytest.raises(ValueError, match="is neither a duration"):
            moment(bad, NOW)
