"""The adaptive strategy's memory and the pacing of the wrapping strategies, without sleeping."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.backoff import Exponential, Fixed
from patience.learning import Memory, memory_path, state_dir
from patience.pacing import Adaptive, Backoff, Diophantine, HttpAware
from patience.ratelimit.algorithms import SlidingWindowLog

CMD = ["curl", "-f", "https://example.com"]


def memory(outcomes=(), rate=0.1, window=50) -> Memory:
    return Memory(CMD, rate, window, outcomes)


# --- suggestions -------------------------------------------------------------------------


def test_no_opinion_before_three_outcomes():
    assert memory().suggest(1.0) is None
    assert memory([(0.3, True), (0.3, True)]).suggest(1.0) is None


def test_no_opinion_when_nothing_ever_succeeded():
    assert memory([(0.1, False), (0.2, False), (0.4, False)]).suggest(1.0) is None


def test_the_delay_that_worked_is_suggested():
    # A first run of exponential backoff: 40, 80, 160 ms failed, 320 ms worked.
    m = memory([(0.04, False), (0.08, False), (0.16, False), (0.32, True)])
    assert m.suggest(0.04) == 0.32


def test_least_expected_wait_wins_over_highest_success_rate():
    # 100 ms works half the time (expected wait 200 ms); 1 s always (1 s): take 100 ms.
    outcomes = [(0.1, True), (1.0, True), (0.1, False), (0.1, True), (0.1, False)]
    assert memory(outcomes, rate=0.5).suggest(2.0) == pytest.approx(0.1)


def test_equal_expected_waits_go_to_the_shorter_delay():
    # 0.1 s at score 0.5 and 0.2 s at score 1.0: both 0.2 s expected.
    outcomes = [(0.1, True), (0.1, False), (0.2, True), (0.2, True)]
    m = memory(outcomes, rate=0.5)
    assert m.suggest(5.0) == pytest.approx(0.1)
    # The same outcomes in another order of buckets give the same answer.
    assert memory(outcomes[2:] + outcomes[:2], rate=0.5).suggest(5.0) == pytest.approx(0.1)


def test_a_well_proven_delay_probes_half_when_the_shorter_bucket_is_untried():
    m = memory([(0.4, True)] * 5)
    assert m.suggest(1.0) == pytest.approx(0.2)
    # Once the probe has failed, the proven delay is used again.
    m.record(0.2, False)
    assert m.suggest(1.0) == pytest.approx(0.4)


def test_recent_outcomes_weigh_more():
    # 320 ms used to work, now it fails, and so does 640 ms; 1.28 s works: the memory
    # moves on.
    old = [(0.32, True)] * 10
    new = [(0.32, False)] * 15 + [(0.64, False)] + [(1.28, True)] * 3
    assert memory(old + new).suggest(0.04) == pytest.approx(1.28)


def test_window_keeps_only_the_latest_outcomes():
    m = memory(window=3)
    for i in range(10):
        m.record(float(i), True)
    assert m.outcomes == [(7.0, True), (8.0, True), (9.0, True)]


@given(
    st.lists(st.tuples(st.floats(0, 1e6), st.booleans()), max_size=60),
    st.floats(0.001, 1.0),
    st.floats(0, 1e6),
)
def test_suggestions_are_finite_and_deterministic(outcomes, rate, fallback):
    first = memory(outcomes, rate).suggest(fallback)
    assert first == memory(outcomes, rate).suggest(fallback)
    if first is not None:
        assert 0 <= first <= max(d for d, _ in outcomes)


# --- persistence -------------------------------------------------------------------------


def test_state_dir_follows_xdg(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    assert state_dir() == str(tmp_path / "patience")
    monkeypatch.setenv("XDG_STATE_HOME", "relative/path")  # the spec says: ignore it
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert state_dir() == str(tmp_path / "home" / ".local" / "state" / "patience")
    monkeypatch.delenv("XDG_STATE_HOME")
    assert state_dir() == str(tmp_path / "home" / ".local" / "state" / "patience")


def test_one_file_per_command(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    a, b = memory_path(["echo", "a b"]), memory_path(["echo a", "b"])
    assert a != b
    assert a == memory_path(["echo", "a b"])
    assert os.path.dirname(a) == str(tmp_path / "patience")


def test_save_and_load_round_trip(tmp_path: Path):
    path = str(tmp_path / "state" / "patience" / "m.json")
    m, warning = Memory.load(path, CMD, 0.1, 50)
    assert warning is None and m.outcomes == []
    m.record(0.5, False)
    m.record(1.0, True)
    assert m.save(path) is None
    assert oct(os.stat(os.path.dirname(path)).st_mode & 0o777) == "0o700"
    again, warning = Memory.load(path, CMD, 0.1, 50)
    assert warning is None
    assert again.outcomes == [(0.5, False), (1.0, True)]


def test_concurrent_runs_both_count(tmp_path: Path):
    path = str(tmp_path / "m.json")
    first, _ = Memory.load(path, CMD, 0.1, 50)
    second, _ = Memory.load(path, CMD, 0.1, 50)
    first.record(0.1, True)
    second.record(0.2, False)
    first.save(path)
    second.save(path)
    merged, _ = Memory.load(path, CMD, 0.1, 50)
    assert merged.outcomes == [(0.1, True), (0.2, False)]


def test_saving_trims_to_the_window(tmp_path: Path):
    path = str(tmp_path / "m.json")
    m = Memory(CMD, 0.1, 4)
    for i in range(6):
        m.record(float(i), True)
    m.save(path)
    assert len(json.loads(Path(path).read_text())["outcomes"]) == 4


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        "[]",
        '{"format": 99}',
        '{"format": 1, "command": ' + json.dumps(CMD) + ', "outcomes": [["x", true]]}',
        '{"format": 1, "command": ' + json.dumps(CMD) + ', "outcomes": [[-1, true]]}',
    ],
)
def test_an_unreadable_memory_is_ignored_with_a_warning(tmp_path: Path, content: str):
    path = tmp_path / "m.json"
    path.write_text(content)
    m, warning = Memory.load(str(path), CMD, 0.1, 50)
    assert m.outcomes == []
    assert warning is not None and str(path) in warning and "starting afresh" in warning


def test_another_commands_memory_is_not_mixed_in(tmp_path: Path):
    path = str(tmp_path / "m.json")
    other = Memory(["other"], 0.1, 50)
    other.record(1.0, True)
    other.save(path)
    m, warning = Memory.load(path, CMD, 0.1, 50)
    assert warning is None and m.outcomes == []


def test_an_unwritable_state_dir_gives_a_warning(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    m = memory()
    m.record(1.0, True)
    warning = m.save(str(blocker / "patience" / "m.json"))
    assert warning is not None and "cannot save what it learned" in warning


# --- pacing of the wrapping strategies ----------------------------------------------------


def test_backoff_pacing_adds_the_delay_to_now():
    pacing = Backoff(Exponential(0.1))
    assert pacing.first(5.0) == 5.0
    assert pacing.next(3, 10.0, hint=99.0) == pytest.approx(10.4)


def test_http_aware_prefers_the_hint_and_caps_it():
    pacing = HttpAware(Exponential(0.1, max_delay=60.0), max_delay=30.0)
    assert pacing.next(1, 0.0, hint=None) == pytest.approx(0.1)
    assert pacing.note == ""
    assert pacing.next(2, 0.0, hint=7.5) == 7.5
    assert pacing.note == "server hint"
    assert pacing.next(3, 0.0, hint=3600.0) == 30.0
    # The fallback never exceeds the cap either.
    assert HttpAware(Fixed(100.0), max_delay=2.0).next(1, 0.0, None) == 2.0


def _adaptive(outcomes, tmp_path: Path, base=0.04) -> Adaptive:
    return Adaptive(Exponential(base), memory(outcomes), str(tmp_path / "m.json"))


def test_adaptive_uses_the_fallback_without_an_opinion(tmp_path: Path):
    pacing = _adaptive([], tmp_path)
    assert [pacing.next(n, 0.0, None) for n in (1, 2, 3)] == pytest.approx([0.04, 0.08, 0.16])
    assert pacing.note == ""


def test_adaptive_starts_from_the_learned_delay_then_doubles(tmp_path: Path):
    pacing = _adaptive([(0.04, False), (0.08, False), (0.16, False), (0.32, True)], tmp_path)
    assert pacing.next(1, 0.0, None) == pytest.approx(0.32)
    assert pacing.note == "learned"
    pacing.observe(False)
    assert pacing.next(2, 0.0, None) == pytest.approx(0.64)
    pacing.observe(True)
    assert pacing.memory.new == [(0.32, False), (0.64, True)]


def test_adaptive_delays_stay_under_the_fallbacks_cap(tmp_path: Path):
    pacing = Adaptive(
        Exponential(1.0, max_delay=5.0),
        memory([(4.0, True)] * 3 + [(2.0, False)]),
        str(tmp_path / "m.json"),
    )
    delays = [pacing.next(n, 0.0, None) for n in range(1, 6)]
    assert max(delays) == 5.0


def test_adaptive_learns_a_recovery_time_and_keeps_it(tmp_path: Path):
    """A service that needs 300 ms after a failure: the first run walks the fallback up to
    320 ms; every later run waits 320 ms at once."""
    path = str(tmp_path / "m.json")
    attempts_per_run = []
    for _ in range(10):
        m, _ = Memory.load(path, CMD, 0.1, 50)
        pacing = Adaptive(Exponential(0.04), m, path)
        attempts = 1
        for n in range(1, 20):
            delay = pacing.next(n, 0.0, None) - 0.0
            ok = delay >= 0.3
            pacing.observe(ok)
            attempts += 1
            if ok:
                break
        pacing.finish()
        attempts_per_run.append(attempts)
    assert attempts_per_run[0] == 5
    assert attempts_per_run[1:] == [2] * 9


def test_adaptive_does_not_drift_on_a_randomly_flaky_command(tmp_path: Path):
    rng = random.Random(7)
    m = memory(rate=0.1)
    first_delays = []
    for _ in range(40):
        pacing = Adaptive(Exponential(0.02), m, str(tmp_path / "m.json"))
        for n in range(1, 30):
            delay = pacing.next(n, 0.0, None)
            if n == 1:
                first_delays.append(delay)
            ok = rng.random() < 0.5
            pacing.observe(ok)
            if ok:
                break
    assert max(first_delays[-10:]) <= 0.16


def test_diophantine_follows_the_offsets_when_the_limit_allows():
    pacing = Diophantine([0.0, 10.0, 30.0], SlidingWindowLog(100, 3600.0))
    start = pacing.first(1000.0)
    assert start == 1000.0
    assert pacing.admit(start) is None
    assert pacing.next(1, 1001.0, None) == 1010.0
    assert pacing.next(2, 1012.0, None) == 1030.0
    # Past the list the last gap repeats.
    assert pacing.planned(4) == 50.0
    assert pacing.planned(5) == 70.0
    # A late attempt is not run twice as fast: it starts now, not in the past.
    assert pacing.next(2, 1040.0, None) == 1040.0


def test_diophantine_holds_attempts_back_to_the_rate_limit():
    pacing = Diophantine([0.0, 0.0, 0.0, 0.0, 0.0], SlidingWindowLog(2, 1.0))
    starts = []
    due = pacing.first(0.0)
    for attempt in range(1, 6):
        assert pacing.admit(due) is None
        starts.append(due)
        if attempt < 5:
            due = pacing.next(attempt, due, None)
    assert starts == [0.0, 0.0, 1.0, 1.0, 2.0]
    assert "rate limit 2 per 1s" in pacing.note


def test_diophantine_single_offset_repeats_at_once():
    pacing = Diophantine([5.0], SlidingWindowLog(10, 1.0))
    assert pacing.planned(1) == 5.0 and pacing.planned(3) == 5.0


def test_diophantine_admission_refuses_a_full_window():
    limiter = SlidingWindowLog(1, 10.0)
    pacing = Diophantine([0.0, 0.0], limiter)
    assert pacing.admit(0.0) is None
    assert pacing.admit(1.0) == pytest.approx(10.0)
