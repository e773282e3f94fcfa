"""The fixed-rate schedule with an injected clock: phase, overrun policies, jitter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repeater.schedules import BackToBack, FixedRate


def test_fixed_rate_keeps_phase_without_overrun() -> None:
    s = FixedRate(1.0)
    assert s.first(100.0) == 100.0
    # Runs that end early never shift the chain.
    assert s.next(100.3, None) == 101.0
    assert s.next(101.9, None) == 102.0
    assert s.skipped == 0


def test_no_immediate_waits_one_period() -> None:
    assert FixedRate(2.0, immediate=False).first(10.0) == 12.0


def test_skip_drops_missed_ticks_and_keeps_phase() -> None:
    s = FixedRate(1.0, "skip")
    s.first(0.0)
    assert s.next(3.5, None) == 4.0  # ticks 1, 2, 3 were missed
    assert s.skipped == 3
    assert s.next(4.2, None) == 5.0


def test_burst_runs_every_missed_tick() -> None:
    s = FixedRate(1.0, "burst")
    s.first(0.0)
    assert [s.next(3.5, None) for _ in range(4)] == [1.0, 2.0, 3.0, 4.0]
    assert s.skipped == 0


def test_delay_moves_the_phase() -> None:
    s = FixedRate(1.0, "delay")
    s.first(0.0)
    assert s.next(3.5, None) == 3.5
    assert s.next(3.6, None) == 4.5
    assert s.skipped == 0


def test_jitter_moves_runs_not_the_chain() -> None:
    s = FixedRate(1.0, jitter=lambda: 0.25)
    assert s.first(0.0) == 0.25
    assert s.next(0.5, None) == 1.25
    assert s.next(1.5, None) == 2.25


@given(
    st.floats(min_value=0.01, max_value=100),
    st.lists(st.floats(min_value=0, max_value=5), min_size=1, max_size=50),
    st.sampled_from(["skip", "burst", "delay"]),
)
def test_due_times_never_go_backwards(period: float, run_times: list[float], policy: str) -> None:
    s = FixedRate(period, policy)
    now = 0.0
    due = s.first(now)
    for took in run_times:
        now = max(now, due) + took
        nxt = s.next(now, None)
        assert nxt is not None and nxt >= due
        if policy == "skip":
            assert nxt >= now - 1e-9
        due = nxt


def test_back_to_back_is_now() -> None:
    s = BackToBack()
    assert s.first(5.0) == 5.0
    assert s.next(7.0, None) == 7.0


@pytest.mark.parametrize("policy", ["skip", "burst", "delay"])
def test_on_time_runs_are_unaffected_by_policy(policy: str) -> None:
    s = FixedRate(0.5, policy)
    s.first(0.0)
    assert [s.next(0.5 * k + 0.1, None) for k in range(4)] == [0.5, 1.0, 1.5, 2.0]
