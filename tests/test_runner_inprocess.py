"""rpr's runner in-process: a fake clock and a fake spawner (tests/attempt_support), so
schedules, overrun policies, stop conditions, patterns, gates and metrics are checked
exactly, without sleeping or starting a process. What rpr writes is the real reporters'.
"""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attempt_support import T0, WALL0, ClosedGate, FakeMetrics, FakeWorld, Run
from patience.ratelimit.algorithms import SlidingWindowLog
from patience.ratelimit.gate import LocalGate
from repeater.http_timing import HintReader, HttpAware
from repeater.output import JsonReporter, QuietReporter, Reporter, VerboseReporter
from repeater.runner import Runner
from repeater.schedules import BackToBack, FixedRate, Schedule
from repeater.stop import StopConditions
from repeater.until import UntilMatch

ITERATION = "RPR_ITERATION"


def make(
    world: FakeWorld,
    schedule: Schedule | None = None,
    stop: StopConditions | None = None,
    reporter: Reporter | None = None,
    **options: object,
) -> Runner:
    return Runner(
        ["cmd"],
        schedule or FixedRate(1.0),
        stop or StopConditions(times=3),
        reporter or QuietReporter(),
        clock=world,
        spawner=world,
        **options,  # type: ignore[arg-type]
    )


def test_fixed_rate_starts_on_the_ticks(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, 0.2)])
    assert make(world, stop=StopConditions(times=4), reporter=Reporter()).run() == 0
    assert world.prepared
    assert world.starts() == [0.0, 1.0, 2.0, 3.0]
    assert world.numbers(ITERATION) == ["1", "2", "3", "4"]
    assert world.inherited()
    assert capfd.readouterr().err == (
        "rpr summary\n"
        "  runs:          4 (4 succeeded, 0 failed, 100.0% success)\n"
        "  skipped ticks: 0\n"
        "  duration:      min 200ms  p50 200ms  p95 200ms  p99 200ms  max 200ms\n"
        "  lateness:      p50 0s  p99 0s\n"
        "  exit codes:    0: 4\n"
    )


@pytest.mark.parametrize(
    ("policy", "offsets", "skipped"),
    [
        ("skip", [0.0, 0.4, 0.5, 0.6, 0.7], 3),
        ("burst", [0.0, 0.35, 0.35, 0.35, 0.4], 0),
        ("delay", [0.0, 0.35, 0.45, 0.55, 0.65], 0),
    ],
)
def test_overrun_policies(policy: str, offsets: list[float], skipped: int) -> None:
    world = FakeWorld(lambda n: Run(0, 0.35 if n == 1 else 0.0))
    runner = make(world, FixedRate(0.1, policy), StopConditions(times=5))
    assert runner.run() == 0
    assert world.starts() == pytest.approx(offsets)
    assert runner.summary.skipped == skipped


def test_back_to_back_starts_when_the_last_run_ends() -> None:
    world = FakeWorld([Run(0, 0.5), Run(0, 1.5), Run(0, 0.25)])
    assert make(world, BackToBack()).run() == 0
    assert world.starts() == [0.0, 0.5, 2.0]


def test_no_run_starts_after_the_deadline() -> None:
    world = FakeWorld([Run(0, 0.1)])
    stop = StopConditions(deadline=T0 + 3.5)
    assert make(world, stop=stop).run() == 0
    assert world.starts() == [0.0, 1.0, 2.0, 3.0]
    assert stop.reason == "duration reached"


def test_failures_do_not_stop_but_set_the_exit_status() -> None:
    world = FakeWorld([Run(3)])
    runner = make(world)
    assert runner.run() == 1
    assert len(world.calls) == 3
    assert runner.summary.exit_codes == {3: 3}


def test_until_success_stops_at_the_first_success() -> None:
    world = FakeWorld([Run(1), Run(1), Run(0), Run(1)])
    stop = StopConditions(times=10, until_success=True)
    assert make(world, stop=stop).run() == 0
    assert len(world.calls) == 3
    assert stop.reason == "a run succeeded"


def test_max_failures_stops() -> None:
    world = FakeWorld([Run(1), Run(0), Run(2)])
    stop = StopConditions(times=10, max_failures=2)
    assert make(world, stop=stop).run() == 1
    assert len(world.calls) == 3
    assert stop.reason == "2 failed runs"


def test_patterns_judge_the_runs() -> None:
    world = FakeWorld([Run(0, stdout=b"ERROR x\n"), Run(1, stdout=b"READY\n"), Run(0)])
    runner = make(world, success_pattern=re.compile("READY"), failure_pattern=re.compile("^ERROR"))
    assert runner.run() == 1
    assert (runner.summary.succeeded, runner.summary.failed) == (2, 1)
    assert not world.inherited()


def test_output_prefix_and_patterns_together(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, stdout=b"one\ntwo\n", stderr=b"warn\n")])
    reporter = Reporter(prefix="[x] ", summary=False)
    stop = StopConditions(times=1)
    runner = make(world, stop=stop, reporter=reporter, failure_pattern=re.compile("never"))
    assert runner.run() == 0
    out, err = capfd.readouterr()
    assert (out, err) == ("[x] one\n[x] two\n", "[x] warn\n")


def test_quiet_discards_the_output_unless_a_condition_reads_it() -> None:
    world = FakeWorld([Run(0, stdout=b"done\n")])
    stop = StopConditions(times=5, until=[UntilMatch(re.compile("done"))])
    assert make(world, stop=stop).run() == 0
    assert len(world.calls) == 1  # the condition saw the output and stopped rpr
    assert stop.reason == "stop condition met"


def test_each_run_is_reported_to_metrics() -> None:
    metrics = FakeMetrics()
    world = FakeWorld([Run(0), Run(5), Run(0)])
    assert make(world, metrics=metrics).run() == 1
    assert metrics.records == [(0, True, 0, 1), (5, False, 0, 2), (0, True, 0, 3)]


def test_the_gate_holds_the_rate() -> None:
    world = FakeWorld([Run(0, 0.0)])
    gate = LocalGate(SlidingWindowLog(2, 10.0), clock=world.now, sleep_until=world.sleep_until)
    assert make(world, BackToBack(), StopConditions(times=4), gate=gate).run() == 0
    assert world.starts() == [0.0, 0.0, 10.0, 10.0]


def test_no_token_before_the_deadline_ends_the_runs() -> None:
    world = FakeWorld([Run(0, 0.0)])
    gate = LocalGate(SlidingWindowLog(2, 10.0), clock=world.now, sleep_until=world.sleep_until)
    stop = StopConditions(deadline=T0 + 5.0)
    assert make(world, BackToBack(), stop, gate=gate).run() == 0
    assert world.starts() == [0.0, 0.0]


def test_a_closed_gate_says_why_after_the_summary(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld()
    gate = ClosedGate("patience-daemon is unreachable and fail mode is closed")
    assert make(world, reporter=Reporter(), gate=gate).run() == 1
    assert world.calls == []
    err = capfd.readouterr().err
    assert err.startswith("rpr summary\n  runs:          0 (0 succeeded")
    assert err.endswith("rpr: patience-daemon is unreachable and fail mode is closed\n")


def test_a_command_that_cannot_start(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(spawn_error=True)])
    assert make(world, reporter=Reporter()).run() == 127
    assert capfd.readouterr().err == "rpr: cmd: command not found\n"


def test_an_interrupted_run_is_not_counted() -> None:
    world = FakeWorld([Run(0), Run(1, 5.0, interrupt=2, killed_by=2)])
    runner = make(world, stop=StopConditions(times=5))
    assert runner.run() == 130
    assert len(world.calls) == 2
    assert runner.summary.runs == 1


def test_interrupted_while_waiting() -> None:
    world = FakeWorld([Run(0)])
    world.interrupt_on_sleep = 15
    runner = make(world, stop=StopConditions(times=5))
    assert runner.run() == 143
    assert len(world.calls) == 1  # the first run is due at once; the wait for the second
    assert runner.summary.runs == 1


def test_json_records_on_the_wall_clock(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, 0.25), Run(4, 0.5)])
    assert make(world, FixedRate(2.0), StopConditions(times=2), JsonReporter()).run() == 1
    lines = [json.loads(line) for line in capfd.readouterr().out.splitlines()]
    assert [line["type"] for line in lines] == ["run", "run", "summary"]
    assert lines[1] == {
        "type": "run",
        "iteration": 2,
        "scheduled_start": WALL0 + 2.0,
        "actual_start": WALL0 + 2.0,
        "lateness": 0.0,
        "duration": 0.5,
        "exit_code": 4,
        "signal": None,
        "timed_out": False,
        "success": False,
        "reason": "exit code 4",
    }


def test_verbose_says_each_run(capfd: pytest.CaptureFixture[str]) -> None:
    world = FakeWorld([Run(0, 0.2), Run(3, 0.2)])
    reporter = VerboseReporter()
    reporter.show_summary = False
    assert make(world, stop=StopConditions(times=2), reporter=reporter).run() == 1
    assert capfd.readouterr().err == (
        "rpr: run 1 ok (exit code 0) in 200ms\nrpr: run 2 failed (exit code 3) in 200ms\n"
    )


def test_a_timeout_fails_the_run() -> None:
    world = FakeWorld([Run(0, 9.0)])
    runner = make(world, stop=StopConditions(times=1), timeout=2.0)
    assert runner.run() == 1
    assert [c.timeout for c in world.calls] == [2.0]
    assert runner.summary.exit_codes == {124: 1}


def test_a_servers_hint_delays_the_next_run() -> None:
    busy = Run(22, 0.5, stdout=b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\n\r\n")
    world = FakeWorld([busy, Run(0, 0.5), Run(0)])
    hints = HintReader(wall=world.wall)
    schedule = HttpAware(FixedRate(1.0), min_delay=0.0, max_delay=60.0)
    assert make(world, schedule, hints=hints).run() == 1
    # The hint moved the second run; the third is back on the tick chain (phase kept).
    assert world.starts() == [0.0, 5.5, 7.0]


def test_parallel_runs_each_number_once() -> None:
    world = FakeWorld([Run(0, 0.0)])
    metrics = FakeMetrics()
    runner = make(world, FixedRate(1.0), StopConditions(times=6), parallel=3, metrics=metrics)
    assert runner.run() == 0
    assert sorted(world.numbers(ITERATION), key=int) == ["1", "2", "3", "4", "5", "6"]
    assert runner.summary.runs == 6
    assert sorted(r[3] for r in metrics.records) == [1, 2, 3, 4, 5, 6]


@settings(max_examples=80, deadline=None)
@given(
    durations=st.lists(st.integers(0, 3500), min_size=1, max_size=12),
    period_ms=st.integers(100, 1000),
)
def test_property_skip_keeps_the_phase(durations: list[int], period_ms: int) -> None:
    period = period_ms / 1000
    world = FakeWorld([Run(0, ms / 1000) for ms in durations])
    runner = make(world, FixedRate(period, "skip"), StopConditions(times=len(durations)))
    assert runner.run() == 0
    ticks = [round((c.start - T0) / period, 6) for c in world.calls]
    assert all(t == int(t) for t in ticks)  # every start on the tick chain
    assert ticks == sorted(set(ticks))
    # The ticks passed over, up to the one the schedule chose after the last run.
    last = round((runner.schedule.nominal - T0) / period)  # type: ignore[attr-defined]
    assert runner.summary.skipped == last - len(ticks)
    for start, ms, nxt in zip(ticks, durations, ticks[1:], strict=False):
        end = start * period + ms / 1000
        boundary = (start + 1) * period
        if abs(end - boundary) <= 1e-6:  # ended on the next tick: either reading holds
            assert nxt in (start + 1, start + 2)
        elif end < boundary:  # on time: the next tick
            assert nxt == start + 1
        else:  # overran: the first tick after the end, the ticks between skipped
            assert (nxt - 1) * period - 1e-6 <= end <= nxt * period + 1e-6
