"""The protocol-1.0 schedule decision, against hand-worked cases and an exact brute-force oracle."""

from __future__ import annotations

import math
import random
import time
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patience.ratelimit import schedule_check
from patience.ratelimit.algorithms import RateLimitError
from patience.ratelimit.schedule_check import check_schedule


def overfilled(
    registered: list[float],
    planned: list[float],
    limit: int,
    window: float,
    shift: Fraction | float = 0,
    *,
    go_strict: bool = False,
) -> bool:
    """The Go check, in exact arithmetic: does a window [a, a + W) anchored at one of the
    times hold more than `limit` of them? Unless `go_strict`, only windows holding a planned
    time count.
    """
    times = [(Fraction(r), False) for r in registered]
    times += [(Fraction(p) + Fraction(shift), True) for p in planned]
    span = Fraction(window)
    for anchor, _ in times:
        inside = [is_planned for t, is_planned in times if anchor <= t < anchor + span]
        if len(inside) > limit and (go_strict or any(inside)):
            return True
    return False


@pytest.mark.parametrize(
    ("registered", "planned", "limit", "window", "shift"),
    [
        ([], [0.0], 1, 10.0, 0.0),  # nothing registered
        ([0.0], [10.0], 1, 10.0, 0.0),  # [0, 10) is half-open: 10 is already outside
        ([0.0], [5.0], 1, 10.0, 5.0),  # must move to 10
        ([0.0], [9.999], 1, 10.0, pytest.approx(0.001)),
        ([0.0, 1.0, 2.0], [2.5], 3, 10.0, 7.5),  # wait for the token of 0 to leave
        ([0.0, 1.0, 2.0], [2.5, 3.5], 3, 10.0, 7.5),  # [1, 11) then holds 1, 2 and 10
        ([0.0, 1.0, 2.0], [0.5, 20.0], 3, 10.0, 9.5),
        ([0.0, 1.0, 2.0], [2.0], 4, 10.0, 0.0),  # room for one more
        ([0.0, 1.0, 2.0], [2.0, 2.0], 4, 10.0, 8.0),  # 2 + 8 = 10 leaves [1, 11) with 1, 2, 10, 10
        ([80.0], [0.0, 60.0], 1, 30.0, 50.0),  # 50 and 110 clear 80: the only gap before 110
        ([0.0, 0.25], [0.5], 2, 1.0, 0.5),  # sub-second answer (the Go tool stepped by 1s)
        ([5.0], [0.0], 1, 10.0, 15.0),  # a plan may not just slide under a later entry
        ([-50.0, -45.0], [0.0], 2, 60.0, 10.0),
    ],
)
def test_hand_worked_cases(
    registered: list[float], planned: list[float], limit: int, window: float, shift: float
) -> None:
    assert check_schedule(registered, planned, limit, window) == shift


def test_the_go_clients_real_request() -> None:
    """`rate_limit` 3 per hour, attempts at +0, +10m, +30m after 1735732800 (Unix seconds),
    entries registered 30m and 800s before it.
    """
    t = 1735732800
    planned = [t + ms / 1000 for ms in (0, 600000, 1800000)]
    registered = [t - 1800.0, t - 800.0]
    shift = check_schedule(registered, planned, 3, 3600.0)
    # The second attempt must wait until the first entry leaves: t - 1800 + 3600 = t + 600 + 1200.
    assert shift == 1200.0
    assert not overfilled(registered, planned, 3, 3600.0, shift)
    assert overfilled(registered, planned, 3, 3600.0, shift - 0.001)


def test_the_go_probe_gets_a_plain_yes() -> None:
    """The Go CLI's connection probe: zero time, no offsets, limit 1 per second."""
    assert check_schedule([], [], 1, 1.0) == 0.0
    assert check_schedule([1735732800.0] * 3, [], 1, 1.0) == 0.0


def test_overfull_registrations_do_not_block_every_plan_forever() -> None:
    """Two clients both told "fits" registered 3 in a window of limit 2; later plans still fit
    once clear of them, and a plan far away fits at once."""
    registered = [0.0, 1.0, 2.0]
    assert check_schedule(registered, [100.0], 2, 10.0) == 0.0
    assert check_schedule(registered, [3.0], 2, 10.0) == 8.0  # [2, 12) then holds 2 and 11


def test_a_plan_that_alone_overfills_a_window_is_an_error() -> None:
    with pytest.raises(
        RateLimitError,
        match=r"^3 planned attempts fall within one 1m window but the limit is 2: no delay can"
        r" make them fit \(space them out or raise the limit\)$",
    ):
        check_schedule([], [0.0, 10.0, 20.0], 2, 60.0)


@pytest.mark.parametrize(
    ("registered", "planned", "limit", "window", "message"),
    [
        ([], [0.0], 0, 1.0, "rate limit 0 is not a positive whole number"),
        ([], [0.0], 1.5, 1.0, "rate limit 1.5 is not a positive whole number"),
        ([], [0.0], 1, 0.0, "rate-limit window 0.0 is not a positive number of seconds"),
        ([], [0.0], 1, math.inf, "rate-limit window inf is not a positive number"),
        ([], [0.0], 1, "1s", "rate-limit window '1s' is not a positive number"),
        ([math.nan], [0.0], 1, 1.0, "registered time nan is not a finite number of seconds"),
        ([], [0.0, -math.inf], 1, 1.0, "planned time -inf is not a finite number of seconds"),
        ([], [None], 1, 1.0, "planned time None is not a finite number of seconds"),
    ],
)
def test_bad_arguments_are_refused(
    registered: list[float], planned: list[float], limit: int, window: float, message: str
) -> None:
    with pytest.raises(RateLimitError, match=message):
        check_schedule(registered, planned, limit, window)


def test_integer_times_as_the_go_client_sends_them() -> None:
    assert check_schedule([1735732800], [1735732801], 1, 60) == 59.0


def test_thousands_of_registered_times_are_handled_exactly() -> None:
    """A busy resource: 1000 per hour held by entries one every 3.6s; a plan of 5 attempts."""
    registered = [i * 3.6 for i in range(1000)]
    planned = [3599.0 + offset for offset in (0.0, 600.0, 1800.0, 2400.0, 3000.0)]
    shift = check_schedule(registered, planned, 1000, 3600.0)
    assert not overfilled(registered, planned, 1000, 3600.0, shift)
    assert overfilled(registered, planned, 1000, 3600.0, math.nextafter(shift, 0.0))


TIMES = st.one_of(
    st.integers(0, 40).map(float),
    st.integers(0, 400).map(lambda n: n / 10),
    st.floats(0, 40, allow_subnormal=False),
)


@settings(max_examples=400, deadline=None)
@given(
    st.lists(TIMES, max_size=10),
    st.lists(TIMES, max_size=5),
    st.integers(1, 4),
    st.sampled_from([1.0, 2.5, 10.0, 0.3, 7.0]) | st.floats(0.01, 30, allow_subnormal=False),
    st.data(),
)
def test_the_shift_fits_and_no_smaller_shift_does(
    registered: list[float],
    planned: list[float],
    limit: int,
    window: float,
    data: st.DataObject,
) -> None:
    if overfilled([], planned, limit, window):
        with pytest.raises(RateLimitError, match="no delay can make them fit"):
            check_schedule(registered, planned, limit, window)
        return
    shift = check_schedule(registered, planned, limit, window)
    assert shift >= 0.0
    assert not overfilled(registered, planned, limit, window, shift)
    if not overfilled(registered, [], limit, window, go_strict=True):
        # Where the Go check and ours can differ at all, they agree.
        assert not overfilled(registered, planned, limit, window, shift, go_strict=True)
    if shift == 0.0:
        return
    # The previous float, and shifts chosen anywhere below, overfill a window.
    smaller = [math.nextafter(shift, -math.inf), 0.0, shift / 2]
    smaller += data.draw(st.lists(st.floats(0, shift, exclude_max=True), max_size=5))
    for candidate in smaller:
        assert overfilled(registered, planned, limit, window, candidate), candidate


def least_fitting_shift(
    registered: list[float], planned: list[float], limit: int, window: float
) -> float:
    """The answer by brute force: the least float >= 0 at which the plan fits.

    The fitting shifts are closed runs, each starting at 0 or where an open run of bad shifts
    ends, and those ends are r - p + e·window for a registered r, a planned p and e in {-1, 0,
    1} (a time enters or leaves a window). Trying the least float at or after each such start,
    in order, finds the least fitting float.
    """
    span = Fraction(window)
    starts = {Fraction(0)}
    starts |= {
        Fraction(r) - Fraction(p) + e * span
        for r in registered
        for p in planned
        for e in (-1, 0, 1)
    }
    for start in sorted(s for s in starts if s >= 0):
        shift = float(start)
        if Fraction(shift) < start:
            shift = math.nextafter(shift, math.inf)
        if not overfilled(registered, planned, limit, window, shift):
            return shift
    raise AssertionError("past every registered time the plan always fits")


CLUSTERED = st.one_of(st.integers(0, 12).map(float), st.integers(0, 60).map(lambda n: n / 4))


@settings(max_examples=500, deadline=None)
@given(
    st.lists(CLUSTERED | TIMES, max_size=14),
    st.lists(CLUSTERED | TIMES, min_size=1, max_size=7),
    st.integers(1, 5),
    st.sampled_from([1.0, 2.5, 3.0, 10.0, 0.75]) | st.floats(0.01, 30, allow_subnormal=False),
)
def test_the_answer_is_the_brute_force_least_shift(
    registered: list[float], planned: list[float], limit: int, window: float
) -> None:
    """Clustered times make several planned and registered times share windows, so every
    level of the search (k planned with limit + 1 - k registered) takes part."""
    if overfilled([], planned, limit, window):
        with pytest.raises(RateLimitError, match="no delay can make them fit"):
            check_schedule(registered, planned, limit, window)
        return
    assert check_schedule(registered, planned, limit, window) == least_fitting_shift(
        registered, planned, limit, window
    )


def fits(
    registered: list[float], planned: list[float], limit: int, window: float, shift: float
) -> bool:
    """`overfilled` in O(N log N) for large inputs: each window anchored at a time, by two
    pointers over the sorted times, with a running count of the planned ones."""
    times = sorted(
        [(Fraction(r), 0) for r in registered]
        + [(Fraction(p) + Fraction(shift), 1) for p in planned]
    )
    span = Fraction(window)
    planned_before = [0]
    for _, is_planned in times:
        planned_before.append(planned_before[-1] + is_planned)
    end = 0
    for start, (anchor, _) in enumerate(times):
        while end < len(times) and times[end][0] < anchor + span:
            end += 1
        if end - start > limit and planned_before[end] > planned_before[start]:
            return False
    return True


def timed(registered: list[float], planned: list[float], limit: int, window: float) -> float:
    started = time.perf_counter()
    shift = check_schedule(registered, planned, limit, window)
    elapsed = time.perf_counter() - started
    print(f"check_schedule({len(registered)} registered, {len(planned)} planned): {elapsed:.3f}s")
    assert elapsed < 2.0
    return shift


def test_ten_thousand_planned_beside_ten_thousand_registered_is_fast_and_exact() -> None:
    """A full hour of 10,000 per hour, and a plan of 10,000 more from its middle: they fit
    when the first registered ones leave. Every pair of planned and registered levels
    (10^4 × 10^4 × thousands) was once built one by one: minutes, and gigabytes."""
    registered = [i * 0.36 for i in range(10_000)]
    planned = [1800.0 + i * 0.36 for i in range(10_000)]
    shift = timed(registered, planned, 10_000, 3600.0)
    assert shift == pytest.approx(1800.0)
    assert fits(registered, planned, 10_000, 3600.0, shift)
    assert not fits(registered, planned, 10_000, 3600.0, math.nextafter(shift, 0.0))


def test_a_hundred_thousand_registered_is_fast_and_exact() -> None:
    rng = random.Random(7)
    registered = sorted(rng.uniform(0.0, 3600.0) for _ in range(100_000))
    planned = [rng.uniform(0.0, 3600.0) for _ in range(1000)]
    shift = timed(registered, planned, 100_000, 3600.0)
    assert fits(registered, planned, 100_000, 3600.0, shift)
    assert not fits(registered, planned, 100_000, 3600.0, math.nextafter(shift, 0.0))


def test_scattered_times_that_block_every_early_shift_get_a_fitting_answer_fast() -> None:
    """10,000 registered times scattered over 11 days, one per 10s window allowed, and a plan
    of 10,000 attempts 15s apart: some pair collides at almost every shift, so the exact
    search would pass ~10^8 bad intervals (over a minute). It stops after its budget, with
    the first stretch where nothing registered is near the plan, which here is the least."""
    rng = random.Random(3)
    registered = [rng.uniform(0.0, 1e6) for _ in range(10_000)]
    planned = [i * 15.0 for i in range(10_000)]
    shift = timed(registered, planned, 1, 10.0)
    assert fits(registered, planned, 1, 10.0, shift)
    assert shift == max(registered) + 10.0  # no gap of 150,000s + 2 windows came earlier


def test_a_contrived_tiling_is_answered_fast_and_here_still_exactly() -> None:
    """Registered times 1.9·k·j and planned 1.9·i (limit 1 per 1s): every shift up to the last
    registered time meets a different pair, k² = 10^7 bad intervals. The budgeted search
    settles for the stretch past them, which here is also the least shift."""
    k = 3000
    registered = [1.9 * k * j for j in range(k)]
    planned = [1.9 * i for i in range(k)]
    shift = timed(registered, planned, 1, 1.0)
    assert fits(registered, planned, 1, 1.0, shift)
    assert not fits(registered, planned, 1, 1.0, math.nextafter(shift, 0.0))
    assert shift == registered[-1] + 1.0


def test_a_search_out_of_budget_answers_a_fitting_shift(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no budget at all the search settles at once: for the stretch clear of registered
    times, which fits but may be later than the least."""
    registered, planned = [0.0, 3.0], [0.0, 2.0]
    assert check_schedule(registered, planned, 1, 1.0) == 2.0  # at 2 and 4: clear of 0 and 3
    monkeypatch.setattr(schedule_check, "SEARCH_STEPS_PER_TIME", 0)
    assert check_schedule(registered, planned, 1, 1.0) == 4.0  # at 4 and 6: past 3's window
    assert check_schedule(registered, [5.0], 1, 1.0) == 0.0  # fits: nothing to search
