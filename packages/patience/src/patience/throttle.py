"""Throttle signals in a run's output or exit, reported to the daemon (docs/adaptive-limits.md).

Under `--daemon`, each run or attempt is looked at after it ends: the head of its output (the
first 10 KiB, what `--http-aware` reads, through the same hint parser,
patience.httpaware.throttle_signal) and its exit status. A 429, a 503 with Retry-After, a
Retry-After, X-RateLimit-Remaining: 0 with its reset, a JSON retry hint, the user's
`--throttle-pattern RE` matching the head, or the user's `--throttle-exit CODE`: any of them
is sent to the daemon as `feedback`, which pauses and slows every client of the resource.
The output itself passes through unchanged: the head is a copy.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable

    from patience.capture import Head
    from patience.daemon.client import DaemonClient
    from patience.process import RunResult

    # (signal, seconds the server asked for or None, HTTP status or None)
    Report = Callable[[str, float | None, int | None], None]

__all__ = ["ThrottleWatch", "feedback_sender"]


class ThrottleWatch:
    """Looks at each run for a throttle signal and hands it to `report` (the daemon gate's
    `throttled`)."""

    def __init__(
        self,
        report: Report,
        pattern: re.Pattern[str] | None = None,
        exit_code: int | None = None,
    ) -> None:
        self.report = report
        self.pattern = pattern
        self.exit_code = exit_code

    def sink(self) -> Head:
        """A fresh copy of one run's output head (runs may be in flight together)."""
        from patience.capture import Head

        return Head()

    def judge(self, head: Head, result: RunResult, now: float) -> str | None:
        """After a run whose output `head` kept (`now`, the wall clock): report its throttle
        signal, if any, and return it."""
        from patience.httpaware import throttle_signal

        empty = not (head.data[1] or head.data[2])  # most runs: no hint to parse
        text = "\n" if empty else head.text()
        found = None if empty else throttle_signal(text, now)
        if found is None and self.pattern is not None and self.pattern.search(text):
            found = ("pattern", _hint(text, now), None)
        if found is None and self.exit_code is not None and result.exit_code == self.exit_code:
            found = ("exit", _hint(text, now), None)
        if found is None:
            return None
        self.report(*found)
        return found[0]


def feedback_sender(client: DaemonClient, resource_id: str) -> Report:
    """The report of a throttle signal to the daemon: a `feedback` message on `client`, a
    connection of its own (a start may end in a worker thread while the gate waits for a
    token on its connection), one at a time. Lost when the daemon is away or refuses it:
    the run goes on either way."""
    from threading import Lock

    from patience.daemon.client import DaemonError, DaemonUnavailable

    lock = Lock()

    def report(signal: str, retry_after: float | None, status: int | None) -> None:
        with lock:
            try:
                client.feedback(resource_id, signal, retry_after, status)
            except (DaemonUnavailable, DaemonError):
                pass

    return report


def _hint(text: str, now: float) -> float | None:
    from patience.httpaware import parse_hint

    return parse_hint(text, now) if text else None
