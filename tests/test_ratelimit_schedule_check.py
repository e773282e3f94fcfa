"""The protocol-1.0 schedule decision, against hand-worked cases and an exact brute-force oracle."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
