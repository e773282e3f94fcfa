"""The rpr loop: wait until due, run, record, decide; repeat.

Due times are absolute deadlines on the monotonic clock, so the run time never shifts the
schedule. With --parallel N, up to N runs are in flight (worker threads, imported only
then); a tick that finds every slot busy is an overrun and the schedule's policy applies.
"""

from __future__ import annotations

import os
import time

from patience import process
from patience.conditions import PatternWatch, judge
from repeater.output import Reporter, RunRecord, Summary
from repeater.schedules import Outcome

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from patience.coordination import MetricsReporter
    from patience.process import Sink
    from patience.ratelimit.gate import Gate
    from repeater.http_timing import HintReader
    from repeater.schedules import Schedule
    from repeater.stop import StopConditions


class Runner:
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
    ) -> None:
        self.argv = list(argv)
        self.schedule = schedule
        self.stop = stop
        self.reporter = reporter
        self.patterns = {
            name: p
            for name, p in (("success", success_pattern), ("failure", failure_pattern))
            if p is not None
        }
        self.timeout = timeout
        self.kill_after = kill_after
        self.parallel = parallel
        self.gate = gate
        self.hints = hints  # --http-aware: reads each run's output for a retry hint
        self.metrics: MetricsReporter | None = None  # --daemon: each run is reported
        self.summary = Summary()
        # Read os.environ once: decoding it costs ~80 µs, more than a tenth of a run of `true`.
        self.environ = dict(os.environ)
        self.started = 0
        self.spawn_error: process.SpawnError | None = None

    def run(self) -> int:
        """Run until a stop condition holds; return rpr's exit code."""
        process.install_signal_forwarding()
        self.reporter.wall_offset = time.time() - time.monotonic()
        if self.parallel > 1:
            self._loop_parallel()
        else:
            self._loop()
        self.summary.skipped = self.schedule.skipped
        if self.spawn_error is not None:
            e = self.spawn_error
            process.write_all(2, f"rpr: {e.command}: {e.reason}\n".encode())
            return e.exit_code
        self.reporter.finish(self.summary)
        if self.gate is not None and self.gate.failure is not None:
            process.write_all(2, f"rpr: {self.gate.failure}\n".encode())
            return 1
        sig = process.interrupted()
        if sig is not None:
            return 128 + sig
        if self.stop.goal_met:
            return 0
        return 1 if self.summary.failed else 0

    def _loop(self) -> None:
        due = self.schedule.first(time.monotonic())
        while self.stop.may_start(self.started, due):
            if not process.sleep_until(due) or not self._admitted():
                return
            self.started += 1
            record = self._execute(self.started, due, watch_signals=True)
            if record is None or process.interrupted() is not None:
                return
            self._record(record)
            if self.stop.reason is not None:
                return
            nxt = self.schedule.next(time.monotonic(), self._outcome(record))
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
                if record is not None and process.interrupted() is None:
                    with lock:
                        self._record(record)
            finally:
                slots.release()

        due = self.schedule.first(time.monotonic())
        while self.stop.may_start(self.started, due) and self.spawn_error is None:
            if not process.sleep_until(due):
                break
            while not slots.acquire(timeout=0.05):
                if process.interrupted() is not None:
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
                nxt = self.schedule.next(time.monotonic(), None)
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
        return self.gate.wait_turn(until) and self.stop.may_start(self.started, time.monotonic())

    def _execute(self, iteration: int, due: float, watch_signals: bool) -> RunRecord | None:
        env = self.environ.copy()
        env["RPR_ITERATION"] = str(iteration)
        watch = PatternWatch(self.patterns) if self.patterns else None
        output = self._output(watch)
        try:
            result = process.run(
                self.argv,
                output=output,
                timeout=self.timeout,
                kill_after=self.kill_after,
                env=env,
                watch_signals=watch_signals,
            )
        except process.SpawnError as exc:
            self.spawn_error = exc
            self.stop.reason = "cannot start the command"
            return None
        matched = watch.matched if watch else set()
        success, reason = judge(result, "failure" in matched, "success" in matched)
        return RunRecord(iteration, due, result, success, reason)

    def _output(self, watch: PatternWatch | None) -> str | Sink:
        extra: list[Sink] = [c for c in (u.sink() for u in self.stop.until) if c is not None]
        if self.hints is not None:
            extra.append(self.hints.sink())
        if watch is None and not extra:
            return self.reporter.output()
        from patience.capture import LineScanner, Tee

        sinks: list[Sink] = []
        forward = self.reporter.forwarder()
        if forward is not None:
            sinks.append(forward)
        if watch is not None:
            sinks.append(LineScanner(watch.on_line))
        return Tee(sinks + extra)

    def _record(self, record: RunRecord) -> None:
        self.summary.add(record)
        if self.metrics is not None:
            self.metrics.add(record.result, record.success, execution=record.iteration)
        self.stop.after(record)
        self.reporter.run_finished(record, self.summary)

    def _outcome(self, record: RunRecord) -> Outcome:
        r = record.result
        hint = self.hints.hint() if self.hints is not None else None
        return Outcome(record.success, r.duration, r.status, hint)
