"""The rpr loop: wait until due, run, record, decide; repeat.

Due times are absolute deadlines on the monotonic clock, so the run time never shifts the
schedule. With --parallel N, up to N runs are in flight (worker threads, imported only
then); a tick that finds every slot busy is an overrun and the schedule's policy applies.
Each run is the shared attempt step (patience.attempt); what happens goes to the reporter
(repeater.output) as events.
"""

from __future__ import annotations

from patience.attempt import AttemptStep, ProcessSpawner, SystemClock
from patience.exits import ExitStatus
from patience.process import SpawnError
from repeater.output import Summary
from repeater.schedules import Outcome

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from patience.attempt import Attempt, Clock, Spawner
    from patience.coordination import MetricsReporter
    from patience.process import Sink
    from patience.ratelimit.gate import Gate
    from patience.throttle import ThrottleWatch
    from repeater.http_timing import HintReader
    from repeater.output import Reporter
    from repeater.schedules import Schedule
    from repeater.stop import StopConditions

__all__ = ["Runner"]


class Runner:
    """rpr's loop over one command. `gate` (--rate, --daemon) admits each run, `metrics`
    receives each run's record; `clock` and `spawner` are the real ones unless a test gives
    its own."""

    def __init__(
        self,
        argv: Sequence[str],
        schedule: Schedule,
        stop: StopConditions,
        reporter: Reporter,
        *,
        success_pattern: re.Pattern[str] | None = None,
        failure_pattern: re.Pattern[str] | None = None,
        timeout: float | None = None,
        kill_after: float = 5.0,
        parallel: int = 1,
        gate: Gate | None = None,
        hints: HintReader | None = None,
        metrics: MetricsReporter | None = None,
        throttle: ThrottleWatch | None = None,
        clock: Clock | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self.schedule = schedule
        self.stop = stop
        self.reporter = reporter
        self.timeout = timeout
        self.parallel = parallel
        self.gate = gate
        self.hints = hints  # --http-aware: reads each run's output for a retry hint
        self.clock: Clock = clock or SystemClock()
        self.spawner: Spawner = spawner or ProcessSpawner()
        self.step = AttemptStep(
            argv,
            self.spawner,
            variable="RPR_ITERATION",
            numbered="execution",
            metrics=metrics,
            success_pattern=success_pattern,
            failure_pattern=failure_pattern,
            kill_after=kill_after,
            throttle=throttle,
            output=reporter.output,
        )
        self.summary = Summary()
        self.started = 0
        self.spawn_error: SpawnError | None = None

    def run(self) -> int:
        """Run until a stop condition holds; return rpr's exit code."""
        self.spawner.prepare()
        self.reporter.wall_offset = self.clock.wall() - self.clock.now()
        if self.parallel > 1:
            self._loop_parallel()
        else:
            self._loop()
        self.summary.skipped = self.schedule.skipped
        if self.spawn_error is not None:
            self.reporter.cannot_start(self.spawn_error)
            return self.spawn_error.exit_code
        self.reporter.finish(self.summary)
        if self.gate is not None and self.gate.failure is not None:
            self.reporter.error(self.gate.failure)
            return ExitStatus.FAILED
        sig = self.spawner.interrupted()
        if sig is not None:
            return ExitStatus.killed_by(sig)
        if self.stop.goal_met:
            return ExitStatus.OK
        return ExitStatus.FAILED if self.summary.failed else ExitStatus.OK

    def _loop(self) -> None:
        due = self.schedule.first(self.clock.now())
        while self.stop.may_start(self.started, due):
            if not self.clock.sleep_until(due) or not self._admitted():
                return
            self.started += 1
            record = self._execute(self.started, due, watch_signals=True)
            if record is None or self.spawner.interrupted() is not None:
                return
            self._record(record)
            if self.stop.reason is not None:
                return
            nxt = self.schedule.next(self.clock.now(), self._outcome(record))
            if nxt is None:
                return
            due = nxt

    def _loop_parallel(self) -> None:
        import threading

        slots = threading.BoundedSemaphore(self.parallel)
        lock = threading.Lock()
        workers: list[threading.Thread] = []

        def work(iteration: int, due: float) -> None:
            try:
                record = self._execute(iteration, due, watch_signals=False)
                if record is not None and self.spawner.interrupted() is None:
                    with lock:
                        self._record(record)
            finally:
                slots.release()

        due = self.schedule.first(self.clock.now())
        while self.stop.may_start(self.started, due) and self.spawn_error is None:
            if not self.clock.sleep_until(due):
                break
            while not slots.acquire(timeout=0.05):
                if self.spawner.interrupted() is not None:
                    break
            else:
                if not self._admitted():
                    slots.release()
                    break
                self.started += 1
                t = threading.Thread(target=work, args=(self.started, due), daemon=True)
                t.start()
                workers = [w for w in workers if w.is_alive()]
                workers.append(t)
                nxt = self.schedule.next(self.clock.now(), None)
                if nxt is None:
                    break
                due = nxt
                continue
            break
        for t in workers:
            while t.is_alive():
                t.join(0.05)

    def _admitted(self) -> bool:
        """Pass the rate-limit gate, if any. False when interrupted while waiting, or when the
        wait for a token ran past --for (no run starts after the deadline)."""
        if self.gate is None:
            return True
        until = self.stop.deadline
        return self.gate.wait_turn(until) and self.stop.may_start(self.started, self.clock.now())

    def _execute(self, iteration: int, due: float, watch_signals: bool) -> Attempt | None:
        """One run through the attempt step; None when the command cannot be started."""
        inspect: list[Sink] = [c for c in (u.sink() for u in self.stop.until) if c is not None]
        if self.hints is not None:
            inspect.append(self.hints.sink())
        try:
            return self.step.start(
                iteration, due, timeout=self.timeout, inspect=inspect, watch_signals=watch_signals
            )
        except SpawnError as exc:
            self.spawn_error = exc
            self.stop.reason = "cannot start the command"
            return None

    def _record(self, record: Attempt) -> None:
        self.summary.add(record)
        self.stop.after(record)
        self.reporter.run_finished(record, self.summary)

    def _outcome(self, record: Attempt) -> Outcome:
        r = record.result
        hint = self.hints.hint() if self.hints is not None else None
        return Outcome(record.success, r.duration, r.status, hint)
