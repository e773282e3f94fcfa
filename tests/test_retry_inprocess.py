"""patience's retry loop in-process: a fake clock and a fake spawner (tests/attempt_support),
so delays, stop conditions, patterns, gates and metrics are checked exactly, without
sleeping or starting a process. The lines on stderr are the real reporter's, byte for byte.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attempt_support import ClosedGate, FakeMetrics, FakeWorld, Run
from patience.backoff import Exponential, Fixed
from patience.pacing import Backoff, Diophantine, HttpAware, Pacing
from patience.ratelimit.algorithms import SlidingWindowLog
from patience.ratelimit.gate import LocalGate
from patience.retry import Retry
from patience.retry_report import Reporter, Retrying, Stopped, StopWhy

ATTEMPT = "PATIENCE_ATTEMPT"


def make(
    world: FakeWorld,
    pacing: Pacing | None = None,
    attempts: int = 3,
    quiet: bool = False,
    reporter: Reporter | None = None,
    **options: object,
) -> Retry:
    return Retry(
        ["cmd", "arg"],
        pacing or Backoff(Fixed(1.0)),
        reporter or Reporter(attempts, quiet),
        attempts=attempts,
        clock=world,
        spawner=world,
        **options,  # type: ignore[arg-type]
    )


class Recorder(Reporter):
    """Keeps the events instead of (as well as) writing them."""

    def __init__(self, total: int) -> None:
        super().__init__(total, quiet=True)
        self.events: list[object] = []

    def retrying(self, event: Retrying) -> None:
        self.events.append(event)

    def stopped(self, event: Stopped) -> None:
        self.events.append(event)


def stats(attempts: int, ok: int, duration: str, reason: str, waiting: str, longest: str) -> str:
    return (
        "\nRun Statistics:\n"
        f"  Total Attempts: {attempts}\n"
        f"  Successful Runs: {ok}\n"
        f"  Failed Runs: {attempts - ok}\n"
        f"  Total Duration: {duration}\n"
        f"  Final Reason: {reason}\n"
        f"  Time Waiting: {waiting}\n"
        f"  Longest Attempt: {longest}\n"
    )


def test_retries_after_the_delay_until_success(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(1, 0.5), Run(1, 0.5), Run(0, 0.25)])
    assert make(world).run() == 0
    assert world.prepared
    assert world.starts() == [0.0, 1.5, 3.0]
    assert world.numbers(ATTEMPT) == ["1", "2", "3"]
    assert world.inherited()  # nothing must see the output: no pipes
    assert capfd.readouterr().err == (
        "[retry] Attempt 1/3 starting...\n"
        "[retry] Attempt 1/3 failed (exit code 1). Retrying in 1s.\n"
        "[retry] Attempt 2/3 starting...\n"
        "[retry] Attempt 2/3 failed (exit code 1). Retrying in 1s.\n"
        "[retry] Attempt 3/3 starting...\n"
        "✅ [retry] Command succeeded after 3 attempts.\n"
        + stats(3, 1, "3.25s", "command succeeded", "2s", "500ms")
    )


def test_exponential_delays_and_the_last_attempts_status(
    capfd: pytest.CaptureFixture[str],
) -> None:
    world = FakeWorld([Run(7, 0.0)])
    assert make(world, Backoff(Exponential(1.0, 2.0)), attempts=5).run() == 7
    assert world.starts() == [0.0, 1.0, 3.0, 7.0, 15.0]
    err = capfd.readouterr().err
    assert "[retry] Attempt 4/5 failed (exit code 7). Retrying in 8s.\n" in err
    assert "[retry] Attempt 5/5 failed (exit code 7).\n❌ [retry] Command failed after 5" in err
    assert "Final Reason: max attempts reached\n" in err


def test_failure_pattern_stops_at_once(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, stdout=b"FATAL: disk full\n")])
    retry = make(world, failure_pattern=re.compile("FATAL"))
    assert retry.run() == 1  # exit code 0, but the pattern failed it
    assert len(world.calls) == 1
    assert not world.inherited()  # the output went through the pattern watch
    out, err = capfd.readouterr()
    assert out == "FATAL: disk full\n"  # still forwarded byte for byte
    assert (
        "[retry] Attempt 1/3 failed (failure pattern matched)."
        " Not retrying: the failure pattern matched.\n"
        "❌ [retry] Command failed after 1 attempt.\n"
    ) in err
    assert "Final Reason: failure pattern matched\n" in err


def test_success_pattern_makes_a_failed_exit_succeed() -> None:
    world = FakeWorld([Run(1, stdout=b"partial\n"), Run(1, stderr=b"result: ok\n")])
    assert make(world, success_pattern=re.compile(r"ok$")).run() == 0
    assert len(world.calls) == 2


def test_a_status_not_in_retry_on_stops(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(75), Run(3), Run(0)])
    assert make(world, retry_on=frozenset({75})).run() == 3
    assert len(world.calls) == 2
    err = capfd.readouterr().err
    assert (
        "[retry] Attempt 2/3 failed (exit code 3). Not retrying: exit status 3 is not in"
        " --retry-on.\n"
    ) in err
    assert "Final Reason: exit status 3 is not in --retry-on\n" in err


def test_max_time_cuts_the_timeout_and_refuses_a_wait_past_it(
    capfd: pytest.CaptureFixture[str],
) -> None:
    world = FakeWorld([Run(1, 1.0)])
    assert make(world, Backoff(Fixed(10.0)), max_time=15.0).run() == 1
    assert world.starts() == [0.0, 11.0]
    assert [c.timeout for c in world.calls] == [15.0, 4.0]  # what is left of --max-time
    err = capfd.readouterr().err
    assert (
        "[retry] Attempt 2/3 failed (exit code 1)."
        " Not retrying: waiting 10s would pass --max-time 15s.\n"
        "❌ [retry] Command failed after 2 attempts.\n"
    ) in err
    assert "Final Reason: --max-time reached\n" in err


def test_an_attempt_cut_by_max_time_says_so(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, 5.0)])
    assert make(world, max_time=2.0, timeout=30.0).run() == 124
    assert [c.timeout for c in world.calls] == [2.0]
    assert (
        "[retry] Attempt 1/3 failed (timed out: --max-time reached)."
        " Not retrying: waiting 1s would pass --max-time 2s.\n"
    ) in capfd.readouterr().err


def test_own_timeout_is_a_plain_timeout(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, 5.0), Run(0, 0.5)])
    assert make(world, timeout=2.0, max_time=100.0).run() == 0
    assert [c.timeout for c in world.calls] == [2.0, 2.0]
    assert "[retry] Attempt 1/3 failed (timed out). Retrying in 1s.\n" in capfd.readouterr().err


def test_the_gate_spaces_the_attempts() -> None:
    world = FakeWorld([Run(1, 0.0)])
    gate = LocalGate(SlidingWindowLog(2, 10.0), clock=world.now, sleep_until=world.sleep_until)
    retry = make(world, Backoff(Fixed(0.5)), attempts=4, gate=gate)
    assert retry.run() == 1
    assert world.starts() == [0.0, 0.5, 10.0, 10.5]
    assert retry.stats.waited == pytest.approx(10.5)


def test_no_token_before_max_time(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(4, 0.0)])
    gate = LocalGate(SlidingWindowLog(1, 60.0), clock=world.now, sleep_until=world.sleep_until)
    assert make(world, gate=gate, max_time=30.0).run() == 4
    assert world.starts() == [0.0]
    assert capfd.readouterr().err.startswith(
        "[retry] Attempt 1/3 starting...\n"
        "[retry] Attempt 1/3 failed (exit code 4). Retrying in 1s.\n"
        "[retry] Not retrying: the next rate-limit token comes after --max-time 30s.\n"
        "❌ [retry] Command failed after 1 attempt.\n"
    )


def test_no_token_before_max_time_without_any_attempt(
    capfd: pytest.CaptureFixture[str],
) -> None:
    world = FakeWorld()
    limiter = SlidingWindowLog(1, 60.0)
    limiter.acquire(world.now())  # the only token of the window is gone
    gate = LocalGate(limiter, clock=world.now, sleep_until=world.sleep_until)
    assert make(world, gate=gate, max_time=30.0).run() == 124  # as a timeout
    assert world.calls == []
    assert capfd.readouterr().err == (
        "[retry] Not retrying: the next rate-limit token comes after --max-time 30s.\n"
        "❌ [retry] Command failed after 0 attempts.\n"
    )


def test_a_closed_gate_ends_the_run_with_its_reason(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld()
    gate = ClosedGate("patience-daemon is unreachable and fail mode is closed")
    assert make(world, gate=gate, quiet=True).run() == 1
    assert world.calls == []
    assert capfd.readouterr().err == (
        "patience: patience-daemon is unreachable and fail mode is closed\n"
    )


def test_interrupted_during_an_attempt(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(1, 2.0, interrupt=2, killed_by=2)])
    assert make(world).run() == 130
    err = capfd.readouterr().err
    assert "[retry] Attempt 1/3 interrupted (SIGINT). Not retrying.\n" in err
    assert "Final Reason: interrupted (SIGINT)\n" in err


def test_interrupted_while_waiting(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(1, 0.1)])
    world.interrupt_on_sleep = 15
    assert make(world).run() == 143
    assert len(world.calls) == 1
    err = capfd.readouterr().err
    assert "[retry] Interrupted while waiting. Not retrying.\n" in err
    assert "Final Reason: interrupted (SIGTERM)\n" in err


def test_a_command_that_cannot_start(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(spawn_error=True)])
    assert make(world).run() == 127
    assert capfd.readouterr().err == (
        "[retry] Attempt 1/3 starting...\npatience: cmd: command not found\n"
    )


def test_quiet_keeps_only_errors(capfd: pytest.CaptureFixture[str]) -> None:
    assert make(FakeWorld([Run(1), Run(0)]), quiet=True).run() == 0
    assert capfd.readouterr().err == ""


def test_each_attempt_is_reported_to_metrics() -> None:
    metrics = FakeMetrics()
    world = FakeWorld([Run(1), Run(2), Run(0)])
    assert make(world, metrics=metrics).run() == 0
    assert metrics.records == [(1, False, 1, 0), (2, False, 2, 0), (0, True, 3, 0)]


def test_a_servers_hint_sets_the_delay(capfd: pytest.CaptureFixture[str]) -> None:
    busy = Run(22, 0.5, stdout=b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\r\n")
    world = FakeWorld([busy, Run(0)])
    assert make(world, HttpAware(Fixed(1.0), max_delay=60.0)).run() == 0
    assert world.starts() == [0.0, 7.5]
    assert "Retrying in 7s (server hint).\n" in capfd.readouterr().err


def test_diophantine_starts_at_the_planned_offsets() -> None:
    world = FakeWorld([Run(1, 0.2)])
    pacing = Diophantine([0.0, 5.0, 20.0], SlidingWindowLog(10, 60.0))
    assert make(world, pacing).run() == 1
    assert world.starts() == [0.0, 5.0, 20.0]


def test_diophantine_waits_for_its_limiter() -> None:
    world = FakeWorld([Run(1, 0.0)])
    pacing = Diophantine([0.0, 1.0, 2.0, 3.0], SlidingWindowLog(2, 10.0))
    assert make(world, pacing, attempts=4).run() == 1
    assert world.starts() == [0.0, 1.0, 10.0, 11.0]


def test_the_environment_keeps_ours_and_numbers_the_attempt(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATIENCE_TEST_MARK", "kept")
    world = FakeWorld([Run(1), Run(0)])
    assert make(world).run() == 0
    assert [c.env["PATIENCE_TEST_MARK"] for c in world.calls] == ["kept", "kept"]
    assert world.numbers(ATTEMPT) == ["1", "2"]


@pytest.mark.parametrize(
    ("script", "options", "why", "status"),
    [
        ([Run(0)], {}, StopWhy.SUCCEEDED, 0),
        ([Run(1)], {}, StopWhy.ATTEMPTS, 1),
        (
            [Run(0, stdout=b"boom\n")],
            {"failure_pattern": re.compile("boom")},
            StopWhy.FAILURE_PATTERN,
            1,
        ),
        ([Run(9)], {"retry_on": frozenset({1})}, StopWhy.NOT_RETRY_ON, 9),
        ([Run(1, 1.0)], {"max_time": 1.5}, StopWhy.WAIT_PAST_BUDGET, 1),
        ([Run(1, interrupt=1)], {}, StopWhy.INTERRUPTED, 129),
    ],
)
def test_the_stop_event_says_why(
    script: list[Run], options: dict[str, Any], why: str, status: int
) -> None:
    reporter = Recorder(3)
    assert make(FakeWorld(script), reporter=reporter, **options).run() == status
    stop = reporter.events[-1]
    assert isinstance(stop, Stopped)
    assert (stop.why, stop.status) == (why, status)
    assert all(isinstance(e, Retrying) for e in reporter.events[:-1])


@settings(max_examples=60, deadline=None)
@given(
    outcomes=st.lists(
        st.tuples(st.sampled_from([0, 1, 2]), st.integers(0, 4000)), min_size=1, max_size=8
    ),
    attempts=st.integers(1, 8),
    delay_ms=st.integers(1, 5000),
)
def test_property_attempts_start_one_delay_after_the_last_ended(
    outcomes: list[tuple[int, int]], attempts: int, delay_ms: int
) -> None:
    script = [Run(code, ms / 1000) for code, ms in outcomes]
    world = FakeWorld(script)
    reporter = Recorder(attempts)
    status = make(world, Backoff(Fixed(delay_ms / 1000)), attempts, reporter=reporter).run()
    codes = [script[min(i, len(script) - 1)].exit_code for i in range(attempts)]
    expected = next((i + 1 for i, c in enumerate(codes) if c == 0), attempts)
    assert len(world.calls) == expected
    assert status == codes[expected - 1]
    for before, after in zip(world.calls, world.calls[1:], strict=False):
        run = script[min(world.calls.index(before), len(script) - 1)]
        assert after.start == pytest.approx(before.start + run.duration + delay_ms / 1000)
    assert len(reporter.events) == expected  # one Retrying per retry, one Stopped
