"""The retry loop: run the command, judge the attempt, wait as the strategy says, repeat.

Stops at the first success; at the last attempt; at once when the failure pattern matched,
the exit status is not one of --retry-on, the command cannot be executed, the next wait
would end past --max-time, or patience itself was interrupted (an interrupted attempt is
never retried). The command's output goes straight to our stdout/stderr; it is read
through pipes only when a pattern or the http-aware strategy needs to see it.
"""

from __future__ import annotations

import os
import time

from patience import process
from patience.conditions import judge
from patience.durations import format_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Sequence

    from patience.capture import Head
    from patience.conditions import PatternWatch
    from patience.coordination import MetricsReporter
    from patience.pacing import Pacing
    from patience.process import RunResult, Sink
    from patience.ratelimit.gate import Gate

_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 15: "SIGTERM"}


class Reporter:
    """patience's own lines on stderr, in the Go tool's style; `quiet` keeps only errors."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet

    def _write(self, text: str) -> None:
        try:
            process.write_all(2, text.encode("utf-8", "replace"))
        except BrokenPipeError:
            pass

    def line(self, text: str) -> None:
        if not self.quiet:
            self._write(text + "\n")

    def error(self, text: str) -> None:
        self._write(f"patience: {text}\n")

    def attempt(self, n: int) -> str:
        return f"[retry] Attempt {n}/{self.total}"


class Stats:
    __slots__ = ("attempts", "longest", "succeeded", "waited")

    def __init__(self) -> None:
        self.attempts = 0
        self.succeeded = 0
        self.waited = 0.0
        self.longest = 0.0

    def render(self, elapsed: float, reason: str) -> str:
        """The Go tool's block, labels and order kept (scripts read them), then our two
        extra figures."""
        rows = [
            ("Total Attempts", str(self.attempts)),
            ("Successful Runs", str(self.succeeded)),
            ("Failed Runs", str(self.attempts - self.succeeded)),
            ("Total Duration", format_duration(elapsed)),
            ("Final Reason", reason),
            ("Time Waiting", format_duration(self.waited)),
            ("Longest Attempt", format_duration(self.longest)),
        ]
        return "\nRun Statistics:\n" + "".join(f"  {k}: {v}\n" for k, v in rows)


class Retry:
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
    ) -> None:
        self.argv = list(argv)
        self.pacing = pacing
        self.reporter = reporter
        self.attempts = attempts
        self.timeout = timeout
        self.kill_after = kill_after
        self.max_time = max_time
        self.retry_on = retry_on
        self.patterns = {
            name: p
            for name, p in (("success", success_pattern), ("failure", failure_pattern))
            if p is not None
        }
        self.stats = Stats()
        self.started = 0.0
        self.gate: Gate | None = None  # --daemon: each attempt first takes a token
        self.metrics: MetricsReporter | None = None  # --daemon: each attempt is reported

    def run(self) -> int:
        """Retry until done; return patience's exit code."""
        process.install_signal_forwarding()
        self.started = now = time.monotonic()
        budget_end = None if self.max_time is None else now + self.max_time
        env = dict(os.environ)
        watch = self._watch()
        due = self.pacing.first(now)
        attempt = 0
        last_status = 124  # what --max-time leaves when it ends the run before any attempt
        while True:
            attempt += 1
            if not self._wait(due, budget_end):
                if self.gate is not None and self.gate.failure is not None:
                    self.reporter.error(self.gate.failure)
                    return self._finish(1, "no rate-limit token (see the error above)")
                if process.interrupted() is None:
                    self.reporter.line(
                        "[retry] Not retrying: the next rate-limit token comes after"
                        f" --max-time {format_duration(self.max_time or 0.0)}."
                    )
                    self.reporter.line(f"❌ [retry] Command failed after {_plural(attempt - 1)}.")
                    return self._finish(last_status, "--max-time reached")
                self.reporter.line("[retry] Interrupted while waiting. Not retrying.")
                return self._finish(self._interrupted_status(), self._interruption())
            timeout, by_budget = self.timeout, False
            if budget_end is not None:
                left = budget_end - time.monotonic()
                if timeout is None or left < timeout:
                    timeout, by_budget = max(left, 0.001), True
            self.reporter.line(f"{self.reporter.attempt(attempt)} starting...")
            env["PATIENCE_ATTEMPT"] = str(attempt)
            head, sink = self._sink(watch)
            try:
                result = process.run(
                    self.argv, output=sink, timeout=timeout, kill_after=self.kill_after, env=env
                )
            except process.SpawnError as exc:
                self.reporter.error(f"{exc.command}: {exc.reason}")
                return exc.exit_code
            matched = watch.matched if watch is not None else set()
            success, reason = judge(result, "failure" in matched, "success" in matched)
            last_status = result.status or 1
            self._count(result, success)
            if self.metrics is not None:
                self.metrics.add(result, success, attempt=attempt)
            self.pacing.observe(success)
            if result.interrupted:
                # patience itself was told to stop: say so in the exit status, whatever
                # the attempt made of the signal.
                interruption = self._interruption()
                self.reporter.line(
                    f"{self.reporter.attempt(attempt)} {interruption}. Not retrying."
                )
                return self._finish(self._interrupted_status(), interruption)
            if success:
                self.reporter.line(f"✅ [retry] Command succeeded after {_plural(attempt)}.")
                return self._finish(0, "command succeeded")
            if result.timed_out and by_budget:
                reason = "timed out: --max-time reached"
            stop = self._stop_reason(attempt, result, matched)
            if stop is None:
                now = time.monotonic()
                hint = self._hint(head)
                due = self.pacing.next(attempt, now, hint)
                if budget_end is not None and due > budget_end:
                    stop = (
                        f" Not retrying: waiting {format_duration(due - now)} would pass"
                        f" --max-time {format_duration(self.max_time or 0.0)}.",
                        "--max-time reached",
                    )
            if stop is None:
                note = f" ({self.pacing.note})" if self.pacing.note else ""
                self.reporter.line(
                    f"{self.reporter.attempt(attempt)} failed ({reason})."
                    f" Retrying in {format_duration(due - now)}{note}."
                )
                continue
            said, final = stop
            self.reporter.line(f"{self.reporter.attempt(attempt)} failed ({reason}).{said}")
            self.reporter.line(f"❌ [retry] Command failed after {_plural(attempt)}.")
            return self._finish(result.status or 1, final)

    def _stop_reason(
        self, attempt: int, result: RunResult, matched: set[str]
    ) -> tuple[str, str] | None:
        """Why a failed attempt is the last one: the end of its line and the statistics'
        Final Reason; None to retry."""
        if "failure" in matched:
            return " Not retrying: the failure pattern matched.", "failure pattern matched"
        if self.retry_on is not None and result.status not in self.retry_on:
            why = f"exit status {result.status} is not in --retry-on"
            return f" Not retrying: {why}.", why
        if attempt >= self.attempts:
            return "", "max attempts reached"
        return None

    def _watch(self) -> PatternWatch | None:
        if not self.patterns:
            return None
        from patience.conditions import PatternWatch

        return PatternWatch(self.patterns)

    def _sink(self, watch: PatternWatch | None) -> tuple[Head | None, str | Sink]:
        """Output passes straight through unless a pattern or a hint reader must see it."""
        if watch is None and not self.pacing.wants_hint:
            return None, process.INHERIT
        from patience.capture import Forward, Head, LineScanner, Tee

        sinks: list[Sink] = [Forward()]
        if watch is not None:
            watch.reset()
            sinks.append(LineScanner(watch.on_line))
        head = Head() if self.pacing.wants_hint else None
        if head is not None:
            sinks.append(head)
        return head, Tee(sinks)

    def _hint(self, head: Head | None) -> float | None:
        if head is None:
            return None
        from patience.httpaware import parse_hint

        return parse_hint(head.text(), time.time())

    def _wait(self, due: float, until: float | None) -> bool:
        """Sleep until due and until the pacing and the gate admit the attempt; False if
        interrupted, if the gate closed, or if admission would come after `until`."""
        started = time.monotonic()
        try:
            while True:
                if not process.sleep_until(due):
                    return False
                later = self.pacing.admit(time.monotonic())
                if later is None:
                    return self.gate is None or self.gate.wait_turn(until)
                if until is not None and later > until:
                    return False
                due = later
        finally:
            self.stats.waited += time.monotonic() - started

    def _count(self, result: RunResult, success: bool) -> None:
        self.stats.attempts += 1
        self.stats.succeeded += success
        self.stats.longest = max(self.stats.longest, result.duration)

    def _interrupted_status(self) -> int:
        return 128 + (process.interrupted() or 2)

    def _interruption(self) -> str:
        """`interrupted (SIGINT)`: the signal that told patience to stop."""
        return f"interrupted ({_SIGNAL_NAMES.get(process.interrupted() or 0, 'a signal')})"

    def _finish(self, status: int, reason: str) -> int:
        if self.stats.attempts:
            elapsed = time.monotonic() - self.started
            self.reporter.line(self.stats.render(elapsed, reason).rstrip("\n"))
        for warning in self.pacing.finish():
            self.reporter.error(warning)
        return status


def _plural(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"
