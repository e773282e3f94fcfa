"""The backoff modes as schedules: each sequence, its reset on success, and --attempts."""

from __future__ import annotations

import pytest

from patience.backoff import make_strategy
from repeater.backoff_schedules import Backoff
from repeater.schedules import Outcome

OK = Outcome(True, 0.0, 0)
FAIL = Outcome(False, 0.0, 1)


def delays(schedule: Backoff, outcomes: list[Outcome]) -> list[float | None]:
    """The delay the schedule asks for after each outcome (None once it ends)."""
    now = schedule.first(0.0)
    out: list[float | None] = []
    for o in outcomes:
        due = schedule.next(now, o)
        out.append(None if due is None else round(due - now, 6))
        if due is None:
            break
        now = due
    return out


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("exponential", {"base_delay": 1.0, "multiplier": 2.0}, [1, 2, 4, 8, 16]),
        (
            "exponential",
            {"base_delay": 0.5, "multiplier": 3.0, "max_delay": 10.0},
            [0.5, 1.5, 4.5, 10, 10],
        ),
        ("linear", {"increment": 2.0}, [2, 4, 6, 8, 10]),
        ("linear", {"increment": 2.0, "max_delay": 5.0}, [2, 4, 5, 5, 5]),
        ("fibonacci", {"base_delay": 1.0}, [1, 1, 2, 3, 5]),
        ("polynomial", {"base_delay": 1.0, "exponent": 2.0}, [1, 4, 9, 16, 25]),
        (
            "polynomial",
            {"base_delay": 0.5, "exponent": 1.5, "max_delay": 3.0},
            [0.5, 1.414214, 2.598076, 3, 3],
        ),
    ],
)
def test_consecutive_failures_follow_the_sequence(
    name: str, params: dict[str, float], expected: list[float]
) -> None:
    s = Backoff(make_strategy(name, **params), attempts=None)
    assert delays(s, [FAIL] * 5) == expected


@pytest.mark.parametrize(
    ("name", "params", "first_two"),
    [
        ("exponential", {"base_delay": 1.0}, [1, 2]),
        ("linear", {"increment": 1.0}, [1, 2]),
        ("fibonacci", {"base_delay": 2.0}, [2, 2]),
        ("polynomial", {"base_delay": 1.0, "exponent": 3.0}, [1, 8]),
    ],
)
def test_a_success_restarts_the_sequence(
    name: str, params: dict[str, float], first_two: list[float]
) -> None:
    s = Backoff(make_strategy(name, **params), attempts=None)
    got = delays(s, [FAIL, FAIL, FAIL, OK, FAIL, FAIL, OK, OK])
    a, b = first_two
    assert got[3:] == [a, a, b, a, a]


def test_decorrelated_jitter_with_an_injected_rng() -> None:
    strategy = make_strategy("dj", base_delay=1.0, multiplier=3.0, max_delay=60.0, rng=lambda: 0.5)
    s = Backoff(strategy, attempts=None)
    # upper = previous x 3 (base x 3 at first); delay = base + (upper - base) x 0.5.
    assert delays(s, [FAIL, FAIL, FAIL]) == [2.0, 3.5, 5.75]
    # A success forgets the previous delay.
    assert delays(s, [OK]) == [2.0]


def test_attempts_end_the_schedule_after_that_many_runs() -> None:
    s = Backoff(make_strategy("exponential", base_delay=1.0), attempts=3)
    assert delays(s, [FAIL] * 5) == [1, 2, None]
    assert s.runs == 3


def test_one_attempt_is_one_run() -> None:
    s = Backoff(make_strategy("linear", increment=1.0), attempts=1)
    assert delays(s, [OK]) == [None]


def test_attempts_count_successes_too() -> None:
    s = Backoff(make_strategy("fibonacci", base_delay=1.0), attempts=4)
    assert delays(s, [OK, FAIL, OK, OK]) == [1, 1, 1, None]


def test_no_immediate_waits_the_first_delay() -> None:
    s = Backoff(make_strategy("exponential", base_delay=3.0), attempts=2, immediate=False)
    assert s.first(10.0) == 13.0


def test_backoff_needs_each_outcome() -> None:
    assert Backoff(make_strategy("exp"), attempts=None).sequential
