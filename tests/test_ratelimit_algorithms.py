"""The limiter algorithms: their guarantees as properties, their answers on worked examples.

The clock is a parameter everywhere: nothing here sleeps.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patience.ratelimit.algorithms import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    GCRA,
    Decision,
    FixedWindow,
    Limiter,
    RateLimitError,
    SlidingWindowLog,
    make_limiter,
)
from patience.settings import ALGORITHM_ALIASES

WINDOWS = st.sampled_from([1.0, 0.1, 0.3, 3.0, 60.0, 3600.0]) | st.floats(1e-3, 1e4)
LIMITS = st.integers(1, 12)
Steps = list[tuple[float, int, float | None]]
Workload = tuple[int, float, float, Steps]


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    """A limit, a window, a start time and a list of (gap before the request, tokens, a look
    ahead). Gaps favour the boundaries where off-by-one mistakes live: 0, the window, the
    emission interval and their neighbours.
    """
    limit = draw(LIMITS)
    window = draw(WINDOWS)
    start = draw(st.sampled_from([0.0, 12345.678, 1.7e9]) | st.floats(0, 1e6))
    gap = st.sampled_from(
        [0.0, window, window / limit, window / 2, window * 0.999999, window * 1.000001]
    ) | st.floats(0, 2 * window)
    tokens = st.integers(1, limit)
    ahead = st.none() | gap
    steps = draw(st.lists(st.tuples(gap, tokens, ahead), min_size=1, max_size=60))
    return limit, window, start, steps


def drive(limiter: Limiter, start: float, steps: Steps) -> list[float]:
    """Run the workload; on a refusal, check the answer and come back when told to.

    Returns the time of every granted token. Checks on the way: retry_after agrees with
    available_at, the request is admitted at that time, and not just before it. Questions
    about a later time (as a planner asks them) must change nothing.
    """
    granted: list[float] = []
    now = start
    for gap, tokens, ahead in steps:
        now += gap
        if ahead is not None:
            assert limiter.available_at(now + ahead, tokens) >= now + ahead
            assert 0 <= limiter.remaining(now + ahead) <= limiter.limit
        before = limiter.remaining(now)
        decision = limiter.acquire(now, tokens)
        assert decision.limit == limiter.limit
        if decision.granted:
            assert decision.retry_after == 0.0
            assert decision.remaining == before - tokens
            assert limiter.remaining(now) == decision.remaining
            granted.extend([now] * tokens)
            continue
        assert before < tokens
        assert decision.remaining == before
        at = limiter.available_at(now, tokens)
        assert at > now
        assert decision.retry_after == pytest.approx(at - now, rel=1e-12, abs=1e-9)
        assert decision.reset_after >= decision.retry_after - 1e-9
        just_before = math.nextafter(at, -math.inf)
        if just_before > now and not isinstance(limiter, GCRA):
            assert limiter.available_at(just_before, tokens) == at
        retry = limiter.acquire(at, tokens)
        assert retry.granted, (at, tokens, retry)
        granted.extend([at] * tokens)
        now = at
    return granted


def in_window(times: list[float], anchor: float, window: float) -> int:
    return sum(1 for t in times if anchor <= t < anchor + window)


@settings(max_examples=300)
@given(workloads())
def test_sliding_log_never_exceeds_the_limit_in_any_window(
    workload: Workload,
) -> None:
    limit, window, start, steps = workload
    times = drive(SlidingWindowLog(limit, window), start, steps)
    # The busiest half-open window starts at a token's time, so checking those is enough.
    for anchor in times:
        assert in_window(times, anchor, window) <= limit


@settings(max_examples=300)
@given(workloads())
def test_fixed_window_never_exceeds_the_limit_in_an_aligned_window(
    workload: Workload,
) -> None:
    limit, window, start, steps = workload
    times = drive(FixedWindow(limit, window), start, steps)
    counts: dict[float, int] = {}
    for t in times:
        counts[t // window] = counts.get(t // window, 0) + 1
    assert max(counts.values()) <= limit


@settings(max_examples=300)
@given(workloads(), st.integers(1, 12))
def test_gcra_keeps_its_documented_bound(workload: Workload, burst: int) -> None:
    """Tokens admitted between times a and b number at most burst + (b - a)/T.

    Times count in whole nanoseconds; T = window / limit.
    """
    limit, window, start, steps = workload
    burst = min(burst, limit)
    steps = [(gap, min(tokens, burst), ahead) for gap, tokens, ahead in steps]
    times = drive(GCRA(limit, window, burst=burst), start, steps)
    ns = sorted(int(t * 1e9) for t in times)
    interval_ns = round(window * 1e9) / limit
    for i, first in enumerate(ns):
        for j in range(i, len(ns)):
            count = j - i + 1
            assert count <= burst + (ns[j] - first) / interval_ns + 1e-9
    # Over one window (shorter than it by a nanosecond) that is fewer than limit + burst.
    for anchor in times:
        assert in_window(times, anchor, window - 2e-9 * max(1.0, anchor)) < limit + burst


@given(st.sampled_from(ALGORITHMS), LIMITS, WINDOWS, st.data())
def test_remaining_tokens_can_be_taken_and_no_more(
    algorithm: str, limit: int, window: float, data: st.DataObject
) -> None:
    limiter = make_limiter(algorithm, limit, window)
    now = 100.0
    for gap in data.draw(st.lists(st.floats(0, window), max_size=10)):
        now += gap
        limiter.acquire(now)
    left = limiter.remaining(now)
    assert 0 <= left <= limit
    if left < limit:
        assert not limiter.acquire(now, left + 1).granted
    if left:
        assert limiter.acquire(now, left).granted
    assert limiter.remaining(now) == 0


@given(st.sampled_from(ALGORITHMS), LIMITS, WINDOWS, st.lists(st.floats(0, 1e4), max_size=40))
def test_a_clock_that_runs_backwards_cannot_break_the_limit(
    algorithm: str, limit: int, window: float, clock: list[float]
) -> None:
    """The limiter treats a step back as standing still, so its effective times only grow."""
    limiter = make_limiter(algorithm, limit, window)
    effective: list[float] = []
    latest = -math.inf
    for now in clock:
        latest = max(latest, now)
        if limiter.acquire(now).granted:
            effective.append(latest)
    if algorithm == "fixed-window":
        for t in effective:
            assert sum(1 for u in effective if u // window == t // window) <= limit
    elif algorithm != "gcra":
        for anchor in effective:
            assert in_window(effective, anchor, window) <= limit
    else:
        for anchor in effective:
            assert in_window(effective, anchor, window) < 2 * limit + 1


# Worked examples -----------------------------------------------------------------------


def test_sliding_log_worked_example() -> None:
    limiter = SlidingWindowLog(3, 10.0)
    assert [limiter.acquire(t).granted for t in (0.0, 1.0, 2.0)] == [True, True, True]
    refused = limiter.acquire(3.0)
    assert (refused.granted, refused.remaining, refused.retry_after) == (False, 0, 7.0)
    assert refused.reset_after == 9.0  # the token taken at 2 leaves at 12
    assert limiter.available_at(3.0, 2) == 11.0  # two must leave: those of 0 and 1
    assert limiter.acquire(9.999).granted is False
    granted = limiter.acquire(10.0)  # [10, 20) holds 1 and 2 and this one
    assert (granted.granted, granted.remaining, granted.reset_after) == (True, 0, 10.0)
    assert limiter.remaining(12.0) == 2


def test_sliding_log_memory_is_bounded_by_the_limit() -> None:
    limiter = SlidingWindowLog(5, 1.0)
    for i in range(10_000):
        limiter.acquire(i * 0.01)
    assert len(limiter._log) <= 5


def test_sliding_log_memory_does_not_grow_with_tokens() -> None:
    """Tokens granted at one time are one run of the log: a million tokens cost what one does."""
    limiter = SlidingWindowLog(10**9, 365 * 86400.0)
    for now in (0.0, 1.0, 1.0, 2.0):
        assert limiter.acquire(now, 10**6).granted
    assert len(limiter._log) == 3
    assert limiter.remaining(2.0) == 10**9 - 4 * 10**6


def test_sliding_log_answers_inside_a_run() -> None:
    """Admission may need only part of a run to leave; the run's time then decides."""
    limiter = SlidingWindowLog(10, 10.0)
    limiter.acquire(0.0, 4)
    limiter.acquire(1.0, 6)
    assert limiter.available_at(2.0, 4) == 10.0  # the run of 0 leaves
    assert limiter.available_at(2.0, 5) == 11.0  # and one token of the run of 1
    refused = limiter.acquire(2.0, 5)
    assert (refused.retry_after, refused.reset_after, refused.remaining) == (9.0, 9.0, 0)
    assert limiter.remaining(10.0) == 4
    assert not limiter.acquire(10.5, 5).granted
    assert limiter.acquire(11.0, 10).granted


def test_fixed_window_lets_twice_the_limit_through_across_a_boundary() -> None:
    """The documented weakness, shown: 3 at the end of one window, 3 at the start of the next."""
    limiter = FixedWindow(3, 10.0)
    assert all(limiter.acquire(9.9).granted for _ in range(3))
    refused = limiter.acquire(9.95)
    assert refused.granted is False
    assert refused.retry_after == pytest.approx(0.05)
    assert all(limiter.acquire(10.0).granted for _ in range(3))
    refused = limiter.acquire(10.0)  # the new window is full too, until 20
    assert (refused.granted, refused.reset_after) == (False, 10.0)


def test_fixed_window_end_survives_rounding() -> None:
    """(k + 1)·window may round back into window k; the end returned is really past it."""
    for window in (0.1, 0.3, 0.7, 1.1, 3.3):
        limiter = FixedWindow(1, window)
        for k in range(200):
            now = k * window
            limiter.acquire(now)
            at = limiter.available_at(now)
            assert at // window > now // window or at == now
            assert limiter.acquire(at).granted


def test_gcra_allows_a_burst_then_one_token_per_interval() -> None:
    limiter = GCRA(3, 10.0)
    assert [limiter.acquire(0.0).granted for _ in range(4)] == [True, True, True, False]
    at = limiter.available_at(0.0)
    assert at == pytest.approx(10 / 3)
    assert limiter.acquire(at).granted
    assert not limiter.acquire(at).granted
    assert limiter.acquire(limiter.available_at(at)).granted


def test_gcra_burst_is_exact_for_awkward_windows() -> None:
    """With float sums of T a full burst could fail by a rounding step; with integers it cannot."""
    for limit in range(1, 40):
        for window in (0.1, 0.3, 1.0, 7.0, 3600.0):
            limiter = GCRA(limit, window)
            assert limiter.acquire(123.456, limit).granted, (limit, window)
            assert limiter.remaining(123.456) == 0


def test_gcra_answers_like_redis_cell() -> None:
    """Limit 5 per 5s (T = 1s), burst 5: remaining, retry_after and reset_after."""
    limiter = GCRA(5, 5.0)
    first = limiter.acquire(0.0)
    assert first.remaining == 4
    assert first.reset_after == pytest.approx(1.0)
    limiter.acquire(0.0, 4)
    refused = limiter.acquire(0.5)
    assert refused.granted is False
    assert refused.retry_after == pytest.approx(0.5)
    assert refused.reset_after == pytest.approx(4.5)
    assert limiter.remaining(2.0) == 2


def test_gcra_with_a_smaller_burst() -> None:
    limiter = GCRA(10, 10.0, burst=2)
    assert [limiter.acquire(0.0).granted for _ in range(3)] == [True, True, False]
    with pytest.raises(RateLimitError, match="burst of 2"):
        limiter.acquire(0.0, 3)


def test_decision_repr_names_every_field() -> None:
    text = repr(Decision(True, 2, 3, 0.0, 10.0))
    assert text == (
        "Decision(granted=True, remaining=2, limit=3, retry_after=0.0, reset_after=10.0)"
    )


# Names and errors ----------------------------------------------------------------------


def test_make_limiter_knows_every_algorithm_name() -> None:
    assert DEFAULT_ALGORITHM == "diophantine"
    names = (*ALGORITHMS, *ALGORITHM_ALIASES)
    kinds = {name: type(make_limiter(name, 2, 1.0)) for name in names}
    assert kinds == {
        "diophantine": SlidingWindowLog,
        "sliding-window": SlidingWindowLog,
        "fixed-window": FixedWindow,
        "gcra": GCRA,
    }


def test_describe_reads_like_the_configuration() -> None:
    assert make_limiter("diophantine", 10, 60.0).describe() == "10 per 1m (diophantine)"
    assert make_limiter("fixed-window", 3, 0.5).describe() == "3 per 500ms (fixed-window)"


@pytest.mark.parametrize(
    ("algorithm", "limit", "window", "message"),
    [
        (
            "token-bucket",
            1,
            1.0,
            'unknown rate-limit algorithm "token-bucket" \\(use diophantine, ',
        ),
        ("", 1, 1.0, 'unknown rate-limit algorithm ""'),
        ("diophantine", 0, 1.0, r"rate limit 0 is not positive \(use 1 or more\)"),
        ("diophantine", -3, 1.0, "rate limit -3 is not positive"),
        ("gcra", 2.5, 1.0, r"rate limit 2.5 is not a whole number"),
        ("gcra", True, 1.0, r"rate limit True is not a whole number"),
        ("diophantine", 1, 0.0, r"window 0.0 is not a positive duration \(try 1m\)"),
        ("fixed-window", 1, -1.0, "window -1.0 is not a positive duration"),
        ("fixed-window", 1, math.inf, "window inf is not a positive duration"),
        ("fixed-window", 1, math.nan, "window nan is not a positive duration"),
        ("diophantine", 1, "1m", "window '1m' is not a number of seconds"),
        ("gcra", 1, 1e-12, r"window 0.001ns is under 1ms \(try 1ms or more\)"),
    ],
)
def test_bad_limits_are_refused_with_the_fix(
    algorithm: str, limit: int, window: float, message: str
) -> None:
    with pytest.raises(RateLimitError, match=message) as caught:
        make_limiter(algorithm, limit, window)
    assert isinstance(caught.value, ValueError)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_request_larger_than_the_limit_is_an_error_not_a_wait(algorithm: str) -> None:
    limiter = make_limiter(algorithm, 10, 60.0)
    with pytest.raises(RateLimitError, match=r"11 tokens at once can never fit a limit of 10 per"):
        limiter.acquire(0.0, 11)
    with pytest.raises(RateLimitError, match=r"ask for at most 10"):
        limiter.available_at(0.0, 11)
    with pytest.raises(RateLimitError, match=r"cannot ask for 0 tokens \(ask for 1 or more\)"):
        limiter.acquire(0.0, 0)
    with pytest.raises(
        RateLimitError, match=r"cannot ask for 1.5 tokens \(ask for a whole number\)"
    ):
        limiter.acquire(0.0, 1.5)  # type: ignore[arg-type]
    assert limiter.remaining(0.0) == 10  # the refusals took nothing


def test_gcra_burst_must_be_positive() -> None:
    with pytest.raises(RateLimitError, match="GCRA burst 0 is not a positive whole number"):
        GCRA(5, 1.0, burst=0)
