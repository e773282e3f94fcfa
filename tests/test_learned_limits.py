"""The learned limits' control law (patience.ratelimit.learned), pure, with the clock as a
parameter: decrease, episodes, the climb back, the plateau, probing, bounds, convergence to a
server's true limit and recovery when it is raised (hypothesis), the pause."""

from __future__ import annotations

import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patience.ratelimit.algorithms import SlidingWindowLog
from patience.ratelimit.learned import (
    MAX_PLATEAU,
    PLATEAU,
    LearnedLimit,
    Learning,
    LearningError,
    Paused,
)


def learned(value: float = 100, ceiling: int | None = None, **kwargs: object) -> LearnedLimit:
    return LearnedLimit(Learning(**kwargs), 1.0, ceiling, 0.0, value=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"decrease": 0.0}, "decrease 0.0 is not between 0 and 1 (try 0.5)"),
        ({"decrease": 1.0}, "decrease 1.0 is not between 0 and 1 (try 0.5)"),
        ({"increase": 0.0}, "increase 0.0 is not a positive number (try 1)"),
        ({"floor": 0}, "floor 0 is not a whole number from 1 (try 1)"),
        ({"floor": True}, "floor True is not a whole number from 1 (try 1)"),
    ],
)
def test_bad_settings_are_refused_naming_the_fix(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(LearningError) as caught:
        Learning(**kwargs)  # type: ignore[arg-type]
    assert str(caught.value) == message


def test_learning_is_on_by_default_only_without_a_configured_limit() -> None:
    assert Learning().enabled(configured=False) is True
    assert Learning().enabled(configured=True) is False
    assert Learning(adaptive=True).enabled(configured=True) is True
    assert Learning(adaptive=False).enabled(configured=False) is False


def test_a_throttle_decreases_from_the_rate_the_server_refused() -> None:
    limit = learned(100)
    assert limit.throttled(5.0, observed=60.0) is True
    assert limit.value == 30.0 and limit.count == 30 and limit.bad == 60.0
    other = learned(100, decrease=0.8)
    other.throttled(5.0, observed=None)  # unknown: the learned value itself
    assert other.count == 80


def test_signals_within_one_window_of_a_decrease_are_one_episode() -> None:
    limit = learned(100)
    assert limit.throttled(5.0, 100.0) is True
    assert limit.throttled(5.5, 50.0) is False  # every client in flight heard the same "stop"
    assert limit.count == 50 and limit.throttles == 2
    assert limit.throttled(6.0, 50.0) is True  # a window later: the server still says stop
    assert limit.count == 25


def test_clean_windows_climb_back_then_hold_then_probe() -> None:
    limit = learned(100)
    limit.throttled(0.0, 21.0)  # the server refused at 21 a window
    counts = []
    for window in range(1, 16):
        limit.tick(float(window), used=float(limit.count))  # demand at the limit, no throttle
        counts.append(limit.count)
    # half way back to just under 21 (20) each window, at least one token ...
    assert counts[:5] == [15, 17, 18, 19, 20]
    # ... PLATEAU windows there, then probing: +1, +2, +4, ...
    assert counts[5 : 5 + PLATEAU] == [20] * PLATEAU
    assert counts[5 + PLATEAU : 5 + PLATEAU + 4] == [21, 23, 27, 35]


def test_a_probe_that_finds_the_same_ceiling_again_waits_longer_next_time() -> None:
    limit = learned(100)
    limit.throttled(0.0, 21.0)
    plateaus = []
    now = 0.0
    for _ in range(4):
        held = 0
        while limit.count <= 20:  # climb back, hold, then probe to 21
            now += 1.0
            limit.tick(now, float(limit.count))
            held += limit.count == 20
        now += 1.0
        limit.throttled(now, float(limit.count))  # the server refuses 21 again
        plateaus.append(held)
    assert plateaus == [PLATEAU + 1, 2 * PLATEAU + 1, 2 * PLATEAU + 1, 2 * PLATEAU + 1]
    assert limit.hold == MAX_PLATEAU


def test_a_window_without_demand_at_the_limit_teaches_nothing() -> None:
    limit = learned(100)
    limit.throttled(0.0, 40.0)
    assert not limit.tick(1.0, used=3.0)
    assert limit.count == 20
    assert not limit.tick(1.5, used=20.0)  # not a whole window since the last
    assert limit.tick(2.0, used=20.0) and limit.count > 20


def test_a_resource_without_a_limit_starts_at_the_floor_and_probes_up() -> None:
    limit = LearnedLimit(Learning(floor=2), 1.0, None, 0.0)
    assert limit.count == 2
    counts = []
    for window in range(1, 8):
        limit.tick(float(window), used=float(limit.count))
        counts.append(limit.count)
    assert counts == sorted(counts) and counts[-1] >= 10  # slow start: growing by half or more


def test_bounds_ceiling_and_floor() -> None:
    limit = learned(50, ceiling=60, floor=10)
    for window in range(1, 30):
        limit.tick(float(window), used=float(limit.count))
    assert limit.count == 60  # never above the configured limit
    for window in range(30, 40):
        limit.throttled(float(window) * 2, observed=1.0)
    assert limit.count == 10  # never below the floor
    limit.rebase(1.0, ceiling=5)
    assert limit.count == 5  # a configured limit under the floor wins


@settings(max_examples=200, deadline=None)
@given(
    start=st.floats(min_value=1, max_value=10_000),
    ceiling=st.one_of(st.none(), st.integers(min_value=1, max_value=5000)),
    floor=st.integers(min_value=1, max_value=50),
    decrease=st.floats(min_value=0.05, max_value=0.95),
    increase=st.floats(min_value=0.1, max_value=100),
    events=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0.01, max_value=3), st.floats(0, 20_000)),
        max_size=60,
    ),
)
def test_property_bounds_and_directions(
    start: float,
    ceiling: int | None,
    floor: int,
    decrease: float,
    increase: float,
    events: list[tuple[bool, float, float]],
) -> None:
    """Whatever happens: within [min(floor, ceiling), ceiling], a whole count >= 1; a
    throttle never raises the limit, a clean window never lowers it."""
    limit = LearnedLimit(
        Learning(decrease=decrease, increase=increase, floor=floor), 1.0, ceiling, 0.0, start
    )
    now = 0.0
    for throttle, gap, amount in events:
        now += gap
        before = limit.value
        if throttle:
            limit.throttled(now, amount)
            assert limit.value <= max(before, float(min(floor, ceiling or floor)))
        else:
            limit.tick(now, amount)
            assert limit.value >= before
        top = ceiling if ceiling is not None else 1 << 40
        assert min(floor, top) <= limit.count <= top
        assert isinstance(limit.count, int) and limit.count >= 1


def simulate(limit: LearnedLimit, true_limits: list[int]) -> tuple[list[int], list[bool]]:
    """One window per entry: demand is always above the learned limit; the server throttles
    a window whose grants exceed its true limit (and the grants then were the count)."""
    counts, throttled = [], []
    for window, true in enumerate(true_limits, start=1):
        count = limit.count
        over = count > true
        if over:
            limit.throttled(float(window), float(count))
        limit.tick(window + 0.5, float(count))
        counts.append(count)
        throttled.append(over)
    return counts, throttled


@settings(max_examples=60, deadline=None)
@given(true=st.integers(min_value=10, max_value=100_000), start=st.floats(0.1, 10))
def test_property_converges_under_the_true_limit(true: int, start: float) -> None:
    """Starting anywhere from a tenth to ten times the server's limit: after 40 windows the
    learned limit averages at least 85% of it, rarely passes it (at most one window in six,
    each by at most one probe of a token or two past 'just under'), and never exceeds it by
    more than 10%."""
    limit = learned(max(1.0, true * start))
    counts, throttled = simulate(limit, [true] * 120)
    steady = counts[40:]
    assert statistics.mean(steady) >= 0.85 * true
    assert sum(throttled[40:]) <= len(steady) / 6
    assert max(steady) <= max(true * 1.1, true + 2)


@settings(max_examples=40, deadline=None)
@given(true=st.integers(min_value=10, max_value=5000))
def test_property_recovers_when_the_server_allows_more(true: int) -> None:
    """The server's limit doubles: the learned one reaches 80% of it within the longest
    plateau, plus 15 windows, plus twice log2 of the limit (the probe's step doubles from
    `increase`)."""
    limit = learned(true)
    counts, _ = simulate(limit, [true] * 60 + [2 * true] * 100)
    within = MAX_PLATEAU + 15 + 2 * math.ceil(math.log2(true))
    after = counts[60 : 60 + within]
    assert any(count >= 1.6 * true for count in after), after


def test_state_round_trip() -> None:
    limit = learned(100)
    limit.throttled(0.0, 40.0)
    limit.tick(1.0, 20.0)
    copy = learned(1)
    copy.restore(limit.to_state())
    assert (copy.value, copy.bad, copy.step, copy.plateau, copy.hold) == (
        limit.value,
        limit.bad,
        limit.step,
        limit.plateau,
        limit.hold,
    )
    bad = {"value": -3, "bad": "x", "step": 0, "plateau": 99, "hold": 1}
    copy.restore(bad)  # type: ignore[arg-type]  # values out of range or of the wrong type
    assert copy.value == limit.value and copy.plateau == limit.plateau


def test_a_pause_refuses_until_its_end_then_the_limiter_decides() -> None:
    inner = SlidingWindowLog(2, 1.0)
    paused = Paused(inner, until=10.0)
    refusal = paused.acquire(9.0)
    assert not refusal.granted and refusal.retry_after == 1.0 and paused.remaining(9.0) == 0
    assert paused.available_at(9.0) == 10.0
    assert paused.acquire(10.0).granted and paused.acquire(10.0).granted
    assert not paused.acquire(10.5).granted  # the limiter's own refusal
    assert paused.describe() == "2 per 1s (diophantine)"
