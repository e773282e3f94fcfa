"""The delay strategies: exact sequences, caps at huge attempt numbers, injected randomness."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.backoff import (
    STRATEGY_NAMES,
    DecorrelatedJitter,
    Exponential,
    Fibonacci,
    Fixed,
    Jitter,
    Linear,
    Polynomial,
    Strategy,
    make_strategy,
)


def delays(strategy: Strategy, n: int) -> list[float]:
    return [strategy.next_delay(attempt) for attempt in range(1, n + 1)]


def seq(*values: float):
    """An rng that returns the given values in turn."""
    it = iter(values)
    return lambda: next(it)


def test_fixed_is_constant_and_uncapped():
    assert delays(Fixed(0.25), 4) == [0.25] * 4
    assert Fixed(3600.0).next_delay(1000) == 3600.0
    assert Fixed().next_delay(1) == 1.0


def test_exponential_doubles_then_caps():
    assert delays(Exponential(), 8) == [1, 2, 4, 8, 16, 32, 60, 60]
    assert delays(Exponential(0.1, 3.0, 10.0), 4) == pytest.approx([0.1, 0.3, 0.9, 2.7])


def test_linear_grows_by_increment_then_caps():
    assert delays(Linear(), 3) == [1, 2, 3]
    assert delays(Linear(0.5, max_delay=1.2), 4) == [0.5, 1.0, 1.2, 1.2]


def test_fibonacci_sequence_then_cap():
    assert delays(Fibonacci(), 11) == [1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 60]
    assert delays(Fibonacci(0.1, 1.0), 6) == pytest.approx([0.1, 0.1, 0.2, 0.3, 0.5, 0.8])


def test_polynomial_squares_by_default():
    assert delays(Polynomial(), 8) == [1, 4, 9, 16, 25, 36, 49, 60]
    assert delays(Polynomial(0.5, exponent=1.5), 2) == pytest.approx([0.5, 0.5 * 2**1.5])


def test_jitter_scales_the_exponential_ceiling():
    strategy = Jitter(rng=seq(0.5, 0.0, 0.999, 0.5))
    assert delays(strategy, 3) == pytest.approx([0.5, 0.0, 3.996])
    assert strategy.next_delay(100) == 30.0  # half of the 60 s cap


def test_decorrelated_jitter_remembers_the_previous_delay():
    strategy = DecorrelatedJitter(rng=seq(1.0 - 1e-9, 0.5, 0.0, 0.5))
    # first: upper = base * 2 = 2 -> 1 + 1 * ~1 = ~2
    first = strategy.next_delay(1)
    assert first == pytest.approx(2.0)
    # second: upper = 2 * 2 = 4 -> 1 + 3 * 0.5 = 2.5
    assert strategy.next_delay(2) == pytest.approx(2.5)
    # third: rng 0 -> the base delay
    assert strategy.next_delay(3) == 1.0
    strategy.reset()
    # after reset the upper bound starts again from base * multiplier
    assert strategy.next_delay(1) == pytest.approx(1.5)


def test_decorrelated_jitter_stays_under_the_cap():
    strategy = DecorrelatedJitter(base_delay=1.0, max_delay=5.0, rng=lambda: 0.999999)
    assert max(delays(strategy, 50)) <= 5.0
    assert strategy.next_delay(51) == pytest.approx(5.0)


def test_cap_below_base_gives_the_cap():
    assert DecorrelatedJitter(10.0, max_delay=2.0, rng=lambda: 0.5).next_delay(1) == 2.0
    assert Exponential(10.0, max_delay=2.0).next_delay(1) == 2.0
    assert Fibonacci(10.0, max_delay=2.0).next_delay(1) == 2.0


@pytest.mark.parametrize("attempt", [1000, 1001, 10_000, 10**6, 10**400])
@pytest.mark.parametrize(
    "strategy",
    [
        Exponential(),
        Exponential(1e-300, 1e300, 60.0),
        Linear(),
        Jitter(rng=lambda: 0.5),
        DecorrelatedJitter(rng=lambda: 0.5),
        Polynomial(exponent=10.0),
        Polynomial(1e300, exponent=10.0),
    ],
    ids=lambda s: getattr(s, "name", ""),
)
def test_huge_attempt_numbers_saturate_at_the_cap(strategy: Strategy, attempt: int):
    value = strategy.next_delay(attempt)
    assert math.isfinite(value)
    assert 0.0 <= value <= strategy.max_delay
    if not isinstance(strategy, Jitter | DecorrelatedJitter):  # random: any value is fine
        assert value == pytest.approx(strategy.max_delay, rel=0.5)


def test_fibonacci_at_attempt_1000_and_tiny_base():
    assert Fibonacci().next_delay(1000) == 60.0
    assert Fibonacci(5e-324, 60.0).next_delay(5000) == 60.0


FACTORIES = {
    "fixed": lambda p: Fixed(p["delay"]),
    "exponential": lambda p: Exponential(p["base"], p["factor"], p["cap"]),
    "linear": lambda p: Linear(p["base"], p["cap"]),
    "jitter": lambda p: Jitter(p["base"], p["factor"], p["cap"], rng=p["rng"]),
    "decorrelated-jitter": lambda p: DecorrelatedJitter(
        p["base"], p["factor"], p["cap"], rng=p["rng"]
    ),
    "fibonacci": lambda p: Fibonacci(p["base"], p["cap"]),
    "polynomial": lambda p: Polynomial(p["base"], p["factor"], p["cap"]),
}


@given(
    name=st.sampled_from(sorted(FACTORIES)),
    base=st.floats(0, 1e6),
    factor=st.floats(0, 100),
    cap=st.floats(0, 1e7),
    delay=st.floats(0, 1e6),
    attempts=st.lists(st.integers(1, 100_000), min_size=1, max_size=20),
    random=st.floats(0, 1, exclude_max=True),
)
def test_every_delay_is_finite_and_within_the_cap(name, base, factor, cap, delay, attempts, random):
    strategy = FACTORIES[name](
        {
            "base": base,
            "factor": factor,
            "cap": cap,
            "delay": delay,
            "rng": lambda: random,
        }
    )
    for attempt in attempts:
        value = strategy.next_delay(attempt)
        assert math.isfinite(value)
        assert 0.0 <= value <= strategy.max_delay


@given(st.floats(0.001, 100), st.floats(1, 10), st.integers(1, 500))
def test_exponential_is_monotonic(base, factor, attempt):
    strategy = Exponential(base, factor, 60.0)
    assert strategy.next_delay(attempt) <= strategy.next_delay(attempt + 1)


def test_make_strategy_by_name_and_alias():
    assert isinstance(make_strategy("exp", base_delay=0.5), Exponential)
    assert make_strategy("dj", rng=lambda: 0.0).next_delay(1) == 1.0
    assert make_strategy("fix", delay=2.0).next_delay(5) == 2.0
    assert make_strategy("poly", exponent=3.0).next_delay(2) == 8.0
    for alias, canonical in STRATEGY_NAMES.items():
        if canonical not in ("http-aware", "adaptive", "diophantine"):
            assert make_strategy(alias).name == canonical


def test_make_strategy_refuses_unknown_and_wrapping_names():
    with pytest.raises(ValueError, match="not a backoff strategy"):
        make_strategy("quadratic")
    with pytest.raises(ValueError, match="not a backoff strategy"):
        make_strategy("adaptive")


def test_all_ten_strategies_and_aliases_are_named():
    assert set(STRATEGY_NAMES.values()) == {
        "http-aware",
        "exponential",
        "linear",
        "fixed",
        "jitter",
        "decorrelated-jitter",
        "fibonacci",
        "polynomial",
        "adaptive",
        "diophantine",
    }
    for alias in ("ha", "exp", "lin", "fix", "jit", "dj", "fib", "poly", "adapt", "dioph", "dio"):
        assert alias in STRATEGY_NAMES


@pytest.mark.parametrize(
    "make",
    [
        lambda: Fixed(-1.0),
        lambda: Exponential(-1.0),
        lambda: Exponential(1.0, float("nan")),
        lambda: Linear(1.0, max_delay=-1.0),
        lambda: Polynomial(exponent=-2.0),
    ],
)
def test_negative_or_nan_parameters_are_refused(make):
    with pytest.raises(ValueError, match="must be 0 or more"):
        make()


def test_importing_backoff_does_not_import_random():
    code = "import sys, patience.backoff; print('random' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
