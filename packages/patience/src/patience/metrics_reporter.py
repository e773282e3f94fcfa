"""MetricsReporter: one execution record per start, sent to patience-daemon in batches.

Part of the coordination (patience.coordination). A background thread sends the records,
so the run loop never waits for the daemon; records that could not be sent wait (bounded)
until the daemon is back or the tool exits.
"""

from __future__ import annotations

import itertools
import os
import threading
import time

from patience.daemon.client import METRICS_BATCH, DaemonError, DaemonUnavailable
from patience.stderr import say

__all__ = ["GATHER", "MAX_ARG", "MAX_ARGS", "MAX_PENDING", "RESEND", "MetricsReporter"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from patience.daemon.client import DaemonClient
    from patience.daemon_link import Link
    from patience.process import RunResult

    # A queued start: its number here, start (monotonic), duration, success, exit status,
    # attempt and execution numbers.
    _Entry = tuple[int, float, float, bool, int, int, int]

RESEND = 0.25  # how often unsent metrics look whether the daemon is back
GATHER = 0.2  # seconds a metrics batch may gather records before it is sent
MAX_PENDING = 10_000  # records kept while the daemon is away; beyond, new ones are dropped
MAX_ARGS, MAX_ARG = 4096, 65_536  # what the daemon accepts of a command line


class MetricsReporter:
    """One execution record per start (the ExecutionMetrics schema), sent in batches by a
    background thread; `close()` flushes what is left."""

    def __init__(
        self,
        link: Link,
        client: DaemonClient,
        tool: str,
        command: Sequence[str],
        labels: Mapping[str, str],
    ) -> None:
        self.link = link
        self.client = client
        self.base: dict[str, object] = {
            "tool": tool,
            "resource_id": link.resource_id,
            "command": [arg[:MAX_ARG] for arg in command[:MAX_ARGS]],
            "labels": dict(labels),
        }
        self.wall_offset = time.time() - time.monotonic()
        # Record ids: 64 random bits of this process, then a count (unique, and cheaper than
        # 16 random bytes a record).
        self.id_prefix = os.urandom(8).hex()
        self.numbers = itertools.count()
        self.pending: list[_Entry] = []  # queued starts, made into records when sent
        self.dropped = 0
        self.refused = False
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def add(
        self, result: RunResult, success: bool, *, attempt: int = 0, execution: int = 0
    ) -> None:
        """Queue the record of one finished start; never blocks on the daemon."""
        # Kept as taken; the background thread makes the record (the run loop's time is the
        # runs', and the thread's work overlaps them).
        run = (next(self.numbers), result.start, result.duration, success, result.status)
        entry = (*run, attempt, execution)
        with self._cond:
            if self.refused:
                return
            if len(self.pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self.pending.append(entry)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._send_loop, name="patience-metrics", daemon=True
                )
                self._thread.start()
            if len(self.pending) == 1:  # the thread waits for a first record, else it gathers
                self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Send what is left (one last try even if the daemon seemed away), waiting at most
        `timeout`; say how many records were lost unless the user was told of the outage."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            lost = len(self.pending) + self.dropped
        if lost and self.link.up and not self.refused:
            say(
                self.link.prog,
                f"warning: {lost} execution records were not delivered to patience-daemon",
            )

    def _send_loop(self) -> None:
        last_try = False  # at exit, a failed delivery gets one more try on a new connection
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.pending or self._closing)
                if not self._closing:  # let a batch gather
                    self._cond.wait_for(lambda: self._closing, timeout=GATHER)
                if not self.pending:
                    return
                batch = self.pending[:METRICS_BATCH]
                closing = self._closing
            if self._deliver(batch, closing):
                with self._cond:
                    del self.pending[: len(batch)]
                continue
            if self.refused or (closing and last_try):
                return
            if closing:
                last_try = True
                continue
            with self._cond:  # the daemon is away: look again later
                self._cond.wait_for(lambda: self._closing, timeout=RESEND)

    def _record(self, entry: _Entry) -> dict[str, object]:
        """The execution record of one queued start. Its 128-bit id, unique, lets the daemon
        store it once however often it is resent."""
        number, start, duration, success, status, attempt, execution = entry
        return dict(
            self.base,
            record_id=f"{self.id_prefix}{number:016x}",
            start_time=max(0.0, start + self.wall_offset),
            duration=max(0.0, duration),
            success=success,
            exit_code=status,
            attempt_number=attempt,
            execution_number=execution,
        )

    def _deliver(self, batch: list[_Entry], closing: bool) -> bool:
        link = self.link
        if link.up is None:
            link.first_contact(self.client)
        if not link.up and not closing:
            return False
        try:
            self.client.send_metrics([self._record(entry) for entry in batch])
        except DaemonUnavailable as exc:
            link.lost(str(exc))
            return False
        except DaemonError as exc:
            with self._cond:
                self.refused = True
                self.pending.clear()
            say(link.prog, f"warning: patience-daemon did not store the execution records: {exc}")
            return False
        return True
