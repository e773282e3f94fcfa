"""Scale (issue 13): 8 real daemons on the Redis backend, 8 client processes each, one
resource, 60 s (tests/fleet_scenario.py). No window holds more than the limit, the limit is
used, the daemons share it fairly; Redis's cost per grant is recorded. The measures
themselves are checked first, on made-up times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet_scenario import Fleet, count_between, jain_index, run_fleet
from integration_support import most_in_window

# 2,000 tokens per 10 s window. The fleet grants about 2,000/s on 2 loaded cores when the
# limit is not the bottleneck (benchmarks/bench_fleet.py), so each window's 2,000 are granted
# within about a second of their slots freeing, with 9 s to spare when other tests take most
# of the machine; the 64 clients race for each of the 12,000 slots freed in the run. A 1 s
# window (500 per 1 s) was filled too, but with 5 helpers' work on the machine (load average
# 27) its grants reached their clients more than 0.05 s late (a 0.95 s window held 514): the
# allowance below would have to be a tenth of the window or more, and still be at risk.
FLEET = Fleet(daemons=8, clients=8, limit=2000, window=10.0, seconds=60.0)
# A client notes a grant's time when the reply reaches it: after the daemon's decision by the
# daemon's round trip to Redis and the delivery, each longer when the machine is loaded (up to
# ~0.05 s at load average 27). Times noted up to NOISE late can make a window look fuller,
# never emptier: so no window of length (window - NOISE) may hold more than the limit.
NOISE = 0.5
# The steady part: from the end of the first window (the first burst, every client's first
# request) to the end of the run.
WARM_UP = FLEET.window
# What the clients would have been granted had every window of the steady part been full; at
# least this fraction of it.
UTILISATION = 0.9
FAIRNESS = 0.9


@pytest.mark.alone  # 72 processes for a minute: run after the rest (Makefile)
@pytest.mark.slow
def test_eight_daemons_share_one_limit_fully_and_fairly(tmp_path: Path) -> None:
    result = run_fleet(FLEET)
    summary = result.summary()
    every = result.every
    begin = result.start + WARM_UP
    expected = FLEET.limit * (result.stop - begin) / FLEET.window
    summary["utilisation"] = count_between(every, begin, result.stop) / expected
    summary["max_in_window"] = most_in_window(every, FLEET.window - NOISE)
    report = tmp_path / "fleet.json"
    report.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"fleet figures: {report}")
    print(json.dumps({key: value for key, value in summary.items() if key != "redis_calls"}))

    assert summary["max_in_window"] <= FLEET.limit, summary
    assert summary["utilisation"] >= UTILISATION, summary
    assert summary["fairness"] >= FAIRNESS, summary
    assert all(len(times) > 0 for times in result.grants), summary
    assert summary["redis_commands_per_grant"] > 0 < summary["redis_cpu_percent"], summary


# ---- the measures ------------------------------------------------------------------------------

times_lists = st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=60)


@given(times_lists, st.floats(min_value=0.01, max_value=20))
def test_most_in_window_is_the_fullest_half_open_window(times: list[float], window: float) -> None:
    """Some window starts at a recorded time: the fullest is the fullest of those."""
    brute = max((sum(1 for u in times if t <= u and u - t < window) for t in times), default=0)
    assert most_in_window(times, window) == brute


def test_most_in_window_examples() -> None:
    assert most_in_window([], 1.0) == 0
    assert most_in_window([0.0, 1.0, 2.0], 1.0) == 1  # each window ends before the next time
    assert most_in_window([0.0, 0.5, 0.99, 1.0, 1.2], 1.0) == 4
    assert most_in_window([3.0, 0.0, 3.5, 0.1], 1.0) == 2  # order does not matter


def test_count_between_is_half_open() -> None:
    assert count_between([0.0, 1.0, 1.5, 2.0], 1.0, 2.0) == 2


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=20))
def test_jain_index_lies_between_one_over_n_and_one(counts: list[int]) -> None:
    index = jain_index(counts)
    assert 1 / len(counts) - 1e-12 <= index <= 1 + 1e-12


def test_jain_index_examples() -> None:
    assert jain_index([5, 5, 5, 5]) == 1.0
    assert jain_index([8, 0, 0, 0]) == 0.25  # one daemon had everything: 1/n
    assert jain_index([0, 0]) == 1.0
    assert jain_index([3, 1]) == pytest.approx(16 / 20)
