"""A fake world for the in-process tests of the two loops (retry, rpr's runner).

`FakeWorld` is both the clock and the spawner the loops take in their constructors: time
stands still except when a loop sleeps (it jumps to the deadline) or a scripted run takes
its duration; no process is started and nothing sleeps for real.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from patience.process import INHERIT, RunResult, Sink, SpawnError

T0 = 1000.0  # the fake monotonic clock at the start
WALL0 = 1_700_000_000.0  # the fake wall clock at the start


class Run:
    """One scripted run: how it ends, how long it takes, what it prints."""

    def __init__(
        self,
        exit_code: int = 0,
        duration: float = 0.1,
        stdout: bytes = b"",
        stderr: bytes = b"",
        killed_by: int | None = None,
        interrupt: int | None = None,
        spawn_error: bool = False,
    ) -> None:
        self.exit_code = exit_code
        self.duration = duration
        self.stdout = stdout
        self.stderr = stderr
        self.killed_by = killed_by
        self.interrupt = interrupt  # a signal the tool receives while this run is going
        self.spawn_error = spawn_error


class Call:
    """What a loop asked of the spawner for one start."""

    def __init__(
        self, start: float, env: Mapping[str, str], timeout: float | None, output: object
    ) -> None:
        self.start = start
        self.env = dict(env)
        self.timeout = timeout
        self.output = output


class FakeWorld:
    """Clock and spawner at once; `script` gives the run for each start (1-based)."""

    def __init__(self, script: Sequence[Run] | Callable[[int], Run] = ()) -> None:
        self.t = T0
        self.script = script
        self.calls: list[Call] = []
        self.sleeps: list[float] = []
        self.signal: int | None = None
        self.interrupt_on_sleep: int | None = None  # a signal that arrives while sleeping
        self.prepared = False
        self.lock = threading.Lock()

    # Clock
    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return WALL0 + (self.t - T0)

    def sleep_until(self, deadline: float) -> bool:
        if self.interrupt_on_sleep is not None and deadline > self.t:
            self.signal = self.interrupt_on_sleep
        if self.signal is not None:
            return False
        self.sleeps.append(deadline)
        self.t = max(self.t, deadline)
        return True

    # Spawner
    def prepare(self) -> None:
        self.prepared = True

    def interrupted(self) -> int | None:
        return self.signal

    def run(
        self,
        argv: Sequence[str],
        *,
        output: str | Sink,
        timeout: float | None,
        kill_after: float,
        env: Mapping[str, str],
        watch_signals: bool,
    ) -> RunResult:
        with self.lock:
            self.calls.append(Call(self.t, env, timeout, output))
            n = len(self.calls)
            run = self.script(n) if callable(self.script) else self._scripted(n)
            if run.spawn_error:
                raise SpawnError(argv[0], 127, "command not found")
            start = self.t
            duration, timed_out = run.duration, False
            if timeout is not None and duration > timeout:
                duration, timed_out = timeout, True
            self.t += duration
            if run.interrupt is not None:
                self.signal = run.interrupt
        if isinstance(output, Sink):
            for stream, data in ((1, run.stdout), (2, run.stderr)):
                if data:
                    output.feed(stream, data)
            output.close()
        code = None if timed_out or run.killed_by is not None else run.exit_code
        signal = 15 if timed_out else run.killed_by
        return RunResult(start, duration, code, signal, timed_out, self.signal is not None)

    def _scripted(self, n: int) -> Run:
        assert isinstance(self.script, Sequence)
        return self.script[min(n, len(self.script)) - 1] if self.script else Run()

    def starts(self) -> list[float]:
        """Each start's time, from the fake clock's origin."""
        return [round(c.start - T0, 9) for c in self.calls]

    def numbers(self, variable: str) -> list[str]:
        return [c.env[variable] for c in self.calls]

    def inherited(self) -> bool:
        """Whether every run's output went straight through (no pipes)."""
        return all(c.output == INHERIT for c in self.calls)


class FakeMetrics:
    """Records what a loop sends to the metrics reporter."""

    def __init__(self) -> None:
        self.records: list[tuple[int, bool, int, int]] = []
        self.lock = threading.Lock()

    def add(
        self, result: RunResult, success: bool, *, attempt: int = 0, execution: int = 0
    ) -> None:
        with self.lock:
            self.records.append((result.status, success, attempt, execution))


class ClosedGate:
    """A gate that never admits: the daemon said no for good (fail closed)."""

    failure: str | None = None

    def __init__(self, failure: str) -> None:
        self.reason = failure

    def wait_turn(self, until: float | None = None) -> bool:
        self.failure = self.reason
        return False
