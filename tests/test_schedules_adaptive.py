"""The adaptive (AIMD) schedule and the load-adaptive schedule, with injected clocks and
host readings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.hostload import HostLoad
from repeater.adaptive import Adaptive
from repeater.load_adaptive import LoadAdaptive
from repeater.schedules import Outcome


def ok(duration: float = 0.1) -> Outcome:
    return Outcome(True, duration, 0)


def failed(duration: float = 0.1) -> Outcome:
    return Outcome(False, duration, 1)


def make(**kw: float) -> Adaptive:
    params: dict[str, float] = {"base": 1.0, "min_interval": 0.1, "max_interval": 30.0}
    params.update(kw)
    return Adaptive(**params)  # type: ignore[arg-type]


def feed(s: Adaptive, outcomes: list[Outcome]) -> float:
    """Run the outcomes through the schedule; return the interval it ends with."""
    now = s.first(0.0)
    for o in outcomes:
        due = s.next(now + o.duration, o)
        assert due is not None
        now = due
    return s.interval


def test_first_run_is_immediate_or_one_interval_later() -> None:
    assert make().first(5.0) == 5.0
    assert Adaptive(2.0, 0.1, 30.0, immediate=False).first(5.0) == 7.0


def test_intervals_are_start_to_start() -> None:
    s = make()
    assert s.first(10.0) == 10.0
    assert s.next(10.2, ok(0.2)) == pytest.approx(11.0)
    # A run that outlasts the interval is followed at once, never overlapped.
    assert s.next(13.0, ok(2.0)) == 13.0


def test_steady_healthy_runs_keep_the_base_interval() -> None:
    assert feed(make(), [ok(0.1)] * 20) == pytest.approx(1.0)


def test_a_failure_doubles_the_interval() -> None:
    s = make()
    feed(s, [ok(), failed()])
    assert s.interval == pytest.approx(2.0)
    feed(s, [failed()])
    assert s.interval == pytest.approx(4.0)


def test_a_slow_run_doubles_the_interval() -> None:
    s = make(slow_threshold=2.0)
    assert feed(s, [ok(0.1), ok(0.1), ok(0.25)]) == pytest.approx(2.0)
    # Just under the threshold is not slow.
    assert feed(make(slow_threshold=3.0), [ok(0.1), ok(0.29)]) == pytest.approx(1.0)


def test_jitter_of_a_quick_command_is_neither_slow_nor_fast() -> None:
    # 1 ms then 8 ms is eight times slower, but a few milliseconds is start-up noise.
    assert feed(make(), [ok(0.001), ok(0.008), ok(0.001), ok(0.0001)]) == pytest.approx(1.0)
    assert feed(make(), [ok(0.001), ok(0.02)]) == pytest.approx(2.0)


def test_healthy_runs_walk_the_interval_back_to_base_additively() -> None:
    s = make()
    feed(s, [ok(), failed(), failed()])
    assert s.interval == pytest.approx(4.0)
    feed(s, [ok()])
    assert s.interval == pytest.approx(3.9)
    feed(s, [ok()] * 100)
    assert s.interval == pytest.approx(1.0)


def test_fast_runs_shorten_below_base_down_to_min() -> None:
    s = make(fast_threshold=0.5, min_interval=0.5)
    feed(s, [ok(1.0)])
    # The usual duration moves towards the fast runs, so make each one faster still.
    durations = [0.4, 0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002]
    feed(s, [ok(d) for d in durations])
    assert s.interval == pytest.approx(0.5)


def test_the_interval_never_exceeds_max() -> None:
    assert feed(make(max_interval=5.0, failure_threshold=1.0), [failed()] * 10) == 5.0


def test_circuit_opens_after_sustained_failure_and_waits_max_interval() -> None:
    s = make(failure_threshold=0.3, max_interval=30.0)
    now = s.first(0.0)
    for _ in range(3):  # 3 of 10 is not more than 0.3 x 10
        now = s.next(now + 0.1, failed()) or 0.0
    assert s.circuit == "closed"
    end = now + 0.1
    due = s.next(end, failed())
    assert s.circuit == "open"
    assert due == pytest.approx(now + 30.0)


def test_a_successful_probe_closes_the_circuit_and_restarts_at_base() -> None:
    s = make(failure_threshold=0.3)
    feed(s, [failed()] * 4)
    assert s.circuit == "open"
    due = s.next(100.0, ok())
    assert s.circuit == "closed"
    assert s.interval == 1.0
    assert s.recent == []
    assert due is not None


def test_a_failed_probe_keeps_the_circuit_open_for_another_max_interval() -> None:
    s = make(failure_threshold=0.3, max_interval=20.0)
    feed(s, [failed()] * 4)
    probe_due = s.due
    due = s.next(probe_due + 0.1, failed())
    assert s.circuit == "open"
    assert due == pytest.approx(probe_due + 20.0)


def test_failures_are_counted_over_a_window_of_ten() -> None:
    s = make(failure_threshold=0.3)
    # Failures spread out: never more than 3 in any 10 runs.
    feed(s, ([failed()] + [ok()] * 3) * 10)
    assert s.circuit == "closed"


def test_show_metrics_reports_each_decision() -> None:
    lines: list[str] = []
    s = Adaptive(1.0, 0.1, 30.0, report=lines.append)
    s.first(0.0)
    s.next(0.1, ok())
    s.next(1.1, failed())
    assert len(lines) == 2
    assert lines[1].startswith("rpr: adaptive: failed; interval 2s")
    assert "failures 1/2, circuit closed" in lines[1]


@given(st.lists(st.tuples(st.booleans(), st.floats(0.0, 10.0)), max_size=60))
def test_interval_stays_within_bounds_and_due_never_goes_back(
    runs: list[tuple[bool, float]],
) -> None:
    s = make(min_interval=0.2, max_interval=8.0)
    now = s.first(0.0)
    for success, took in runs:
        end = now + took
        due = s.next(end, Outcome(success, took, 0 if success else 1))
        assert due is not None and due >= end
        assert 0.2 <= s.interval <= 8.0
        now = due


class FakeProc:
    """/proc contents handed to HostLoad; `stat` advances by what a test sets."""

    def __init__(self, load: str = "0.50 0.40 0.30 1/100 123", available_kb: int = 6000) -> None:
        self.loadavg = load
        self.meminfo = (
            f"MemTotal:       10000 kB\nMemFree:    1000 kB\nMemAvailable:   {available_kb} kB\n"
        )
        self.busy = 0
        self.idle = 0

    def run(self, busy: int, idle: int) -> None:
        self.busy += busy
        self.idle += idle

    def read(self, path: str) -> str:
        if path == "/proc/loadavg":
            return self.loadavg
        if path == "/proc/meminfo":
            return self.meminfo
        if path == "/proc/stat":
            # user nice system idle iowait irq softirq steal guest guest_nice
            return f"cpu  {self.busy} 0 0 {self.idle} 0 0 0 0 0 0\ncpu0 1 2 3 4\n"
        raise FileNotFoundError(path)


def test_host_load_readings() -> None:
    proc = FakeProc(load="3.00 1.0 1.0 2/300 9", available_kb=2500)
    host = HostLoad(proc.read, cores=2)
    assert host.load_per_core() == pytest.approx(1.5)
    assert host.memory_used() == pytest.approx(75.0)
    assert host.cpu_used() is None  # a rate needs two readings
    proc.run(busy=30, idle=70)
    assert host.cpu_used() == pytest.approx(30.0)
    proc.run(busy=90, idle=10)
    assert host.cpu_used() == pytest.approx(90.0)


def test_iowait_counts_as_idle() -> None:
    text = iter(["cpu  100 0 0 100 0 0 0 0 0 0\n", "cpu  150 0 0 100 50 0 0 0 0 0\n"])
    host = HostLoad(lambda _p: next(text), cores=1)
    host.cpu_used()
    assert host.cpu_used() == pytest.approx(50.0)


def test_host_load_without_proc_reads_nothing() -> None:
    def missing(path: str) -> str:
        raise FileNotFoundError(path)

    host = HostLoad(missing, cores=4)
    assert (host.load_per_core(), host.memory_used(), host.cpu_used()) == (None, None, None)


@pytest.mark.parametrize(
    "text", ["", "cpu", "intr 1 2 3\n", "cpu  a b c d e f g h\n", "cpu  0 0 0 0 0 0 0 0\n"]
)
def test_odd_proc_stat_gives_no_cpu_reading(text: str) -> None:
    host = HostLoad(lambda _p: text, cores=1)
    host.cpu_used()
    assert host.cpu_used() is None


def test_host_load_reads_the_real_host() -> None:
    host = HostLoad()
    load, memory = host.load_per_core(), host.memory_used()
    assert load is not None and load >= 0
    assert memory is not None and 0 < memory < 100
    host.cpu_used()
    sum(i * i for i in range(200000))  # let the jiffies move
    cpu = host.cpu_used()
    assert cpu is None or 0 <= cpu <= 100


def load_schedule(proc: FakeProc, **kw: float) -> LoadAdaptive:
    return LoadAdaptive(
        10.0,
        HostLoad(proc.read, cores=1),
        target_cpu=50.0,
        target_memory=80.0,
        target_load=1.0,
        **kw,  # type: ignore[arg-type]
    )


def test_load_adaptive_follows_the_most_loaded_resource() -> None:
    proc = FakeProc(load="0.5 0 0 1/1 1", available_kb=6000)  # memory 40% of 80% -> 0.5
    s = load_schedule(proc)
    assert s.first(0.0) == 0.0
    proc.run(busy=75, idle=25)  # cpu 75% of 50% -> 1.5, the highest
    assert s.next(1.0, ok()) == pytest.approx(15.0)
    proc.run(busy=10, idle=90)  # cpu 10% -> 0.2; load 0.5 -> 0.5; memory 0.5
    assert s.next(16.0, ok()) == pytest.approx(15.0 + 5.0)


def test_load_adaptive_on_an_overloaded_host_hits_max() -> None:
    proc = FakeProc(load="40 0 0 1/1 1", available_kb=100)
    s = load_schedule(proc)
    s.first(0.0)
    assert s.next(0.5, ok()) == pytest.approx(100.0)  # base x 10


def test_load_adaptive_on_an_idle_host_shrinks_to_min() -> None:
    proc = FakeProc(load="0.01 0 0 1/1 1", available_kb=9990)
    s = load_schedule(proc, min_interval=2.0)
    s.first(0.0)
    proc.run(busy=1, idle=99)
    assert s.next(0.5, ok()) == pytest.approx(2.0)


def test_load_adaptive_without_readings_keeps_the_base() -> None:
    def missing(path: str) -> str:
        raise FileNotFoundError(path)

    s = LoadAdaptive(3.0, HostLoad(missing, cores=1))
    s.first(0.0)
    assert s.next(0.1, ok()) == pytest.approx(3.0)


def test_load_adaptive_reports_its_readings() -> None:
    lines: list[str] = []
    proc = FakeProc(load="2.0 0 0 1/1 1", available_kb=5000)
    s = LoadAdaptive(1.0, HostLoad(proc.read, cores=2), report=lines.append, immediate=False)
    assert s.first(0.0) == 1.0
    proc.run(busy=35, idle=65)
    s.next(1.0, ok())
    assert lines == [
        "rpr: load-adaptive: cpu 35%, memory 50%, load/core 1.00; factor 1.00, interval 1s\n"
    ]
