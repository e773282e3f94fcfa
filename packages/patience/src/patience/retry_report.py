"""What patience's retry loop tells its reporter, and the reporter that words it on stderr.

The loop decides; it hands each decision over as an event (`Retrying` after a failed
attempt that will be retried, `Stopped` once, when the run ends) and the reporter turns it
into the Go tool's lines and its Run Statistics block, so wording never sits in the
control flow and a test can watch the decisions themselves.
"""

from __future__ import annotations

from patience import process
from patience.durations import format_duration

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.attempt import Attempt
    from patience.process import SpawnError

__all__ = ["Reporter", "Retrying", "Stats", "StopWhy", "Stopped"]

_SIGNAL_NAMES = {1: "SIGHUP", 2: "SIGINT", 15: "SIGTERM"}


class StopWhy:
    """Why a run ended: the values of `Stopped.why`."""

    SUCCEEDED = "succeeded"
    FAILURE_PATTERN = "failure pattern"  # the failure pattern matched the output
    NOT_RETRY_ON = "not retry-on"  # the exit status is not one of --retry-on
    ATTEMPTS = "attempts"  # the last attempt failed
    WAIT_PAST_BUDGET = "wait past budget"  # the next wait would end past --max-time
    TOKEN_PAST_BUDGET = "token past budget"  # the next admission comes after --max-time
    INTERRUPTED = "interrupted"  # patience itself was told to stop
    GATE_CLOSED = "gate closed"  # no rate-limit token will come (the gate says why)


class Stats:
    """The figures of the Run Statistics block, kept by the loop as it goes."""

    __slots__ = ("attempts", "longest", "succeeded", "waited")

    def __init__(self) -> None:
        self.attempts = 0
        self.succeeded = 0
        self.waited = 0.0
        self.longest = 0.0

    def count(self, attempt: Attempt) -> None:
        self.attempts += 1
        self.succeeded += attempt.success
        self.longest = max(self.longest, attempt.result.duration)

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


class Retrying:
    """A failed attempt that will be retried after `delay` seconds. `cut_short`: its
    timeout was what was left of --max-time; `note` says why the delay is not the
    strategy's formula (a server hint, a learned delay, a rate limit), if so."""

    __slots__ = ("attempt", "cut_short", "delay", "note")

    def __init__(self, attempt: Attempt, delay: float, note: str, cut_short: bool) -> None:
        self.attempt = attempt
        self.delay = delay
        self.note = note
        self.cut_short = cut_short


class Stopped:
    """The end of the run: `why` (a StopWhy), patience's exit `status`, and the attempt it
    ended with (None when it ended while waiting for the next one)."""

    __slots__ = (
        "attempt",
        "cut_short",
        "elapsed",
        "gate_failure",
        "max_time",
        "signal",
        "stats",
        "status",
        "wait",
        "why",
    )

    def __init__(
        self,
        why: str,
        status: int,
        stats: Stats,
        elapsed: float,
        *,
        attempt: Attempt | None = None,
        cut_short: bool = False,
        wait: float = 0.0,
        max_time: float = 0.0,
        signal: int | None = None,
        gate_failure: str = "",
    ) -> None:
        self.why = why
        self.status = status
        self.stats = stats
        self.elapsed = elapsed
        self.attempt = attempt
        self.cut_short = cut_short
        self.wait = wait  # WAIT_PAST_BUDGET: the wait that would have passed --max-time
        self.max_time = max_time
        self.signal = signal  # INTERRUPTED: the signal patience received
        self.gate_failure = gate_failure  # GATE_CLOSED: why the gate closed

    def final_reason(self) -> str:
        """The statistics' Final Reason."""
        why = self.why
        if why == StopWhy.SUCCEEDED:
            return "command succeeded"
        if why == StopWhy.FAILURE_PATTERN:
            return "failure pattern matched"
        if why == StopWhy.NOT_RETRY_ON:
            return f"exit status {self.status} is not in --retry-on"
        if why == StopWhy.ATTEMPTS:
            return "max attempts reached"
        if why in (StopWhy.WAIT_PAST_BUDGET, StopWhy.TOKEN_PAST_BUDGET):
            return "--max-time reached"
        if why == StopWhy.GATE_CLOSED:
            return "no rate-limit token (see the error above)"
        return _interruption(self.signal)


def _interruption(signal: int | None) -> str:
    """`interrupted (SIGINT)`: the signal that told patience to stop."""
    return f"interrupted ({_SIGNAL_NAMES.get(signal or 0, 'a signal')})"


class Reporter:
    """patience's own lines on stderr, in the Go tool's style; `quiet` keeps only errors."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total = total
        self.quiet = quiet

    def starting(self, number: int) -> None:
        self._line(f"{self._attempt(number)} starting...")

    def retrying(self, event: Retrying) -> None:
        note = f" ({event.note})" if event.note else ""
        self._line(
            f"{self._attempt(event.attempt.number)} failed"
            f" ({_said(event.attempt, event.cut_short)})."
            f" Retrying in {format_duration(event.delay)}{note}."
        )

    def stopped(self, event: Stopped) -> None:
        """The run's last lines, then its statistics."""
        attempt, why = event.attempt, event.why
        failed_after = f"❌ [retry] Command failed after {_plural(event.stats.attempts)}."
        if why == StopWhy.SUCCEEDED:
            self._line(f"✅ [retry] Command succeeded after {_plural(event.stats.attempts)}.")
        elif why == StopWhy.GATE_CLOSED:
            self.error(event.gate_failure)
        elif why == StopWhy.INTERRUPTED:
            if attempt is None:
                self._line("[retry] Interrupted while waiting. Not retrying.")
            else:
                self._line(f"{self._attempt(attempt.number)} {event.final_reason()}. Not retrying.")
        elif attempt is None:
            self._line(
                "[retry] Not retrying: the next rate-limit token comes after"
                f" --max-time {format_duration(event.max_time)}."
            )
            self._line(failed_after)
        else:
            self._line(
                f"{self._attempt(attempt.number)} failed ({_said(attempt, event.cut_short)})."
                + _not_retrying(event)
            )
            self._line(failed_after)
        if event.stats.attempts:
            self._line(event.stats.render(event.elapsed, event.final_reason()).rstrip("\n"))

    def cannot_start(self, error: SpawnError) -> None:
        """The command could not be started: no statistics, the error alone."""
        self.error(f"{error.command}: {error.reason}")

    def error(self, text: str) -> None:
        """A problem the user must see, even with --quiet."""
        self._write(f"patience: {text}\n")

    def _line(self, text: str) -> None:
        if not self.quiet:
            self._write(text + "\n")

    def _write(self, text: str) -> None:
        try:
            process.write_all(2, text.encode("utf-8", "replace"))
        except BrokenPipeError:
            pass

    def _attempt(self, number: int) -> str:
        return f"[retry] Attempt {number}/{self.total}"


def _not_retrying(event: Stopped) -> str:
    """The end of a failed attempt's line: why it is the last one."""
    if event.why == StopWhy.ATTEMPTS:
        return ""
    if event.why == StopWhy.WAIT_PAST_BUDGET:
        why = (
            f"waiting {format_duration(event.wait)} would pass"
            f" --max-time {format_duration(event.max_time)}"
        )
    elif event.why == StopWhy.FAILURE_PATTERN:
        why = "the failure pattern matched"
    else:
        why = event.final_reason()
    return f" Not retrying: {why}."


def _said(attempt: Attempt, cut_short: bool) -> str:
    """An attempt's failure as its line says it."""
    if cut_short and attempt.result.timed_out:
        return "timed out: --max-time reached"
    return attempt.reason


def _plural(n: int) -> str:
    return f"{n} attempt" if n == 1 else f"{n} attempts"
