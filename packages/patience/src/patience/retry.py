"""The retry loop: run the command, judge the attempt, wait as the strategy says, repeat.

Stops at the first success; at the last attempt; at once when the failure pattern matched,
the exit status is not one of --retry-on, the command cannot be executed, the next wait
would end past --max-time, or patience itself was interrupted (an interrupted attempt is
never retried). The command's output goes straight to our stdout/stderr; it is read
through pipes only when a pattern or the http-aware strategy needs to see it.

Each start is the shared attempt step (patience.attempt); what the loop decides goes to
its reporter as events (patience.retry_report), which word them.
"""

from __future__ import annotations

from patience.attempt import AttemptStep, ProcessSpawner, SystemClock
from patience.exits import ExitStatus
from patience.process import SpawnError
from patience.retry_report import Retrying, Stats, Stopped, StopWhy

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from patience.attempt import Attempt, Clock, Spawner
    from patience.capture import Head
    from patience.coordination import MetricsReporter
    from patience.pacing import Pacing
    from patience.ratelimit.gate import Gate
    from patience.retry_report import Reporter
    from patience.throttle import ThrottleWatch

__all__ = ["Retry"]


class Retry:
    """patience's loop over one command. `gate` (--daemon, or a local limit) admits each
    attempt, `metrics` receives each attempt's record; `clock` and `spawner` are the real
    ones unless a test gives its own."""

    def __init__(
        self,
        argv: Sequence[str],
        pacing: Pacing,
        reporter: Reporter,
        *,
        attempts: int,
        timeout: float | None = None,
        kill_after: float = 5.0,
        max_time: float | None = None,
        retry_on: frozenset[int] | None = None,
        success_pattern: re.Pattern[str] | None = None,
        failure_pattern: re.Pattern[str] | None = None,
        gate: Gate | None = None,
        metrics: MetricsReporter | None = None,
        throttle: ThrottleWatch | None = None,
        clock: Clock | None = None,
        spawner: Spawner | None = None,
    ) -> None:
        self.pacing = pacing
        self.reporter = reporter
        self.attempts = attempts
        self.timeout = timeout
        self.max_time = max_time
        self.retry_on = retry_on
        self.gate = gate
        self.clock: Clock = clock or SystemClock()
        self.spawner: Spawner = spawner or ProcessSpawner()
        self.step = AttemptStep(
            argv,
            self.spawner,
            variable="PATIENCE_ATTEMPT",
            numbered="attempt",
            metrics=metrics,
            success_pattern=success_pattern,
            failure_pattern=failure_pattern,
            kill_after=kill_after,
            throttle=throttle,
        )
        self.stats = Stats()
        self.started = 0.0
        self.budget_end: float | None = None
        # What --max-time leaves when it ends the run before any attempt.
        self.last_status: int = ExitStatus.TIMED_OUT
        self.cut_short = False  # the last attempt's timeout was what was left of --max-time
        self.head: Head | None = None  # the last attempt's output head, for a server's hint

    def run(self) -> int:
        """Retry until done; return patience's exit code."""
        self.spawner.prepare()
        self.started = now = self.clock.now()
        if self.max_time is not None:
            self.budget_end = now + self.max_time
        due = self.pacing.first(now)
        number = 0
        while True:
            number += 1
            stop = self._wait(due)
            if stop is None:
                try:
                    attempt = self._attempt(number, due)
                except SpawnError as exc:
                    self.reporter.cannot_start(exc)
                    return exc.exit_code
                after = self._after(attempt)
                if not isinstance(after, Stopped):
                    due = after
                    continue
                stop = after
            self.reporter.stopped(stop)
            for warning in self.pacing.finish():
                self.reporter.error(warning)
            return stop.status

    def _wait(self, due: float) -> Stopped | None:
        """Wait until the next attempt may start; None when it may, else why the run ends."""
        if self._admitted(due):
            return None
        if self.gate is not None and self.gate.failure is not None:
            return self._stop(StopWhy.GATE_CLOSED, 1, gate_failure=self.gate.failure)
        signal = self.spawner.interrupted()
        if signal is None:
            return self._stop(StopWhy.TOKEN_PAST_BUDGET, self.last_status)
        return self._stop(StopWhy.INTERRUPTED, ExitStatus.killed_by(signal), signal=signal)

    def _admitted(self, due: float) -> bool:
        """Sleep until due and until the pacing and the gate admit the attempt; False if
        interrupted, if the gate closed, or if admission would come after --max-time."""
        until = self.budget_end
        started = self.clock.now()
        try:
            while True:
                if not self.clock.sleep_until(due):
                    return False
                later = self.pacing.admit(self.clock.now())
                if later is None:
                    return self.gate is None or self.gate.wait_turn(until)
                if until is not None and later > until:
                    return False
                due = later
        finally:
            self.stats.waited += self.clock.now() - started

    def _attempt(self, number: int, due: float) -> Attempt:
        """Run attempt `number`, its timeout cut to what is left of --max-time."""
        timeout, self.cut_short = self.timeout, False
        if self.budget_end is not None:
            left = self.budget_end - self.clock.now()
            if timeout is None or left < timeout:
                timeout, self.cut_short = max(left, 0.001), True
        self.reporter.starting(number)
        self.head = None
        if self.pacing.wants_hint:
            from patience.capture import Head

            self.head = Head()
        inspect = () if self.head is None else (self.head,)
        attempt = self.step.start(number, due, timeout=timeout, inspect=inspect)
        self.last_status = attempt.result.status or 1
        self.stats.count(attempt)
        self.pacing.observe(attempt.success)
        return attempt

    def _after(self, attempt: Attempt) -> float | Stopped:
        """When the next attempt is due, or why there is none."""
        status = attempt.result.status or 1
        if attempt.result.interrupted:
            # patience itself was told to stop: say so in the exit status, whatever the
            # attempt made of the signal.
            signal = self.spawner.interrupted()
            status = ExitStatus.killed_by(signal or 2)
            return self._stop(StopWhy.INTERRUPTED, status, attempt, signal=signal)
        if attempt.success:
            return self._stop(StopWhy.SUCCEEDED, 0, attempt)
        why = self._last_failure(attempt)
        if why is not None:
            return self._stop(why, status, attempt)
        now = self.clock.now()
        due = self.pacing.next(attempt.number, now, self._hint())
        if self.budget_end is not None and due > self.budget_end:
            return self._stop(StopWhy.WAIT_PAST_BUDGET, status, attempt, wait=due - now)
        self.reporter.retrying(Retrying(attempt, due - now, self.pacing.note, self.cut_short))
        return due

    def _last_failure(self, attempt: Attempt) -> str | None:
        """Why a failed attempt is the last one (a StopWhy); None to retry."""
        if attempt.failure_matched:
            return StopWhy.FAILURE_PATTERN
        if self.retry_on is not None and attempt.result.status not in self.retry_on:
            return StopWhy.NOT_RETRY_ON
        if attempt.number >= self.attempts:
            return StopWhy.ATTEMPTS
        return None

    def _stop(
        self,
        why: str,
        status: int,
        attempt: Attempt | None = None,
        *,
        wait: float = 0.0,
        signal: int | None = None,
        gate_failure: str = "",
    ) -> Stopped:
        return Stopped(
            why,
            status,
            self.stats,
            self.clock.now() - self.started,
            attempt=attempt,
            cut_short=self.cut_short,
            wait=wait,
            max_time=self.max_time or 0.0,
            signal=signal,
            gate_failure=gate_failure,
        )

    def _hint(self) -> float | None:
        """The server's retry hint in the last attempt's output (http-aware)."""
        if self.head is None:
            return None
        from patience.httpaware import parse_hint

        return parse_hint(self.head.text(), self.clock.wall())
