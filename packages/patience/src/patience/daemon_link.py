"""Whether patience-daemon answers, as one tool sees it: first contact, loss, reconnection.

Part of the coordination (patience.coordination): the gate and the metrics reporter of a
tool share one Link, so that a loss or a return is said once on stderr whichever noticed it
(docs/protocol.md, "Restarts and outages").
"""

from __future__ import annotations

import math
import threading
import time

from patience import process
from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable
from patience.daemon.manager import DaemonManager, DaemonNotRunning
from patience.stderr import say

__all__ = ["RECONNECT_FIRST", "RECONNECT_MAX", "RETURN_CHECK", "Link"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.settings.daemon import DaemonSchedule

RECONNECT_FIRST = 0.05  # seconds between the first reconnection attempts (the first is at once),
RECONNECT_MAX = 5.0  # ... doubling up to this
RETURN_CHECK = 0.05  # a start while the daemon is away first looks for it, if not looked lately


class Link:
    """Whether the daemon answers, as this tool last saw it; each change said once on stderr.

    `up` is None before the first contact, which starts the daemon when allowed. A loss
    starts a background thread that reconnects with backoff (the first attempt at once);
    besides, each start while the daemon is away looks for it first (`try_return`), so a
    daemon that is back (restarted, or started by another tool) is used again at once.
    `epoch` counts the contacts made: a gate reports its grants once after each."""

    def __init__(
        self,
        prog: str,
        manager: DaemonManager,
        resource_id: str,
        *,
        reconnect: bool,
        warn: bool,
        schedule: DaemonSchedule | None = None,
    ) -> None:
        self.prog = prog
        self.manager = manager
        self.resource_id = resource_id
        self.reconnect = reconnect  # False when a loss stops the tool (fail mode closed)
        self.warn = warn
        self.schedule = schedule
        self.fallback = f"running {resource_id} without a shared limit"  # what a loss means
        self.up: bool | None = None
        self.reason = ""
        self.epoch = 0
        self._tried = -math.inf  # when the daemon was last looked for
        self._first = threading.Lock()
        self._cond = threading.Condition()
        self._closed = False

    def first_contact(self, client: DaemonClient) -> bool:
        """Find (or start) the daemon once; True when it answers."""
        with self._first:
            if self.up is None:
                self._tried = time.monotonic()
                try:
                    self.manager.ensure(client)
                except DaemonNotRunning as exc:
                    self.lost(str(exc))
                else:
                    self._introduce(client)
                    with self._cond:
                        self.up = True
                        self.epoch += 1
            return bool(self.up)

    def lost(self, reason: str) -> None:
        """The daemon stopped answering: say so once and reconnect in the background."""
        with self._cond:
            if self.up is False or self._closed:
                return
            self.up = False
            self.reason = reason
            if self.reconnect:
                threading.Thread(target=self._reconnect, name="reconnect", daemon=True).start()
        if self.warn and process.interrupted() is None:
            say(
                self.prog,
                f"warning: patience-daemon unavailable: {reason}; {self.fallback} until it is back",
            )

    def try_return(self, client: DaemonClient) -> bool:
        """While the daemon is away: whether it answers again, by one ping through `client`
        (no start: that is the thread's), at most once per RETURN_CHECK."""
        now = time.monotonic()
        if self.up or now - self._tried < RETURN_CHECK:
            return bool(self.up)
        self._tried = now
        if self.manager.check(client) is not None:
            return False
        self._back(client)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _reconnect(self) -> None:
        delay = 0.0
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._closed or bool(self.up), timeout=delay):
                    return
            self._tried = time.monotonic()
            client = DaemonClient(self.manager.socket_path, self.manager.tool)
            try:
                self.manager.ensure(client)
            except DaemonNotRunning:
                delay = min(max(2 * delay, RECONNECT_FIRST), RECONNECT_MAX)
                continue
            else:
                self._back(client)
                return
            finally:
                client.close()

    def _back(self, client: DaemonClient) -> None:
        """The daemon answers again (through `client`): say so once."""
        self._introduce(client)
        with self._cond:
            if self.up is not False or self._closed:
                return
            self.up = True
            self.epoch += 1
            self._cond.notify_all()
        say(
            self.prog,
            f"patience-daemon is back on {self.manager.socket_path};"
            f" coordinating {self.resource_id} through it again",
        )

    def farewell(self, client: DaemonClient) -> None:
        """Our schedule ends on purpose: say so, so that the daemon does not take the silence
        that follows for a missed schedule (an alert); best effort."""
        if self.schedule is not None and self.up:
            try:
                client.request({"type": "unregister_schedule", "resource_id": self.resource_id})
            except (DaemonError, DaemonUnavailable):
                pass

    def _introduce(self, client: DaemonClient) -> None:
        """Tell the daemon our schedule (shown in its resource state); best effort."""
        if self.schedule is not None:
            try:
                client.register_schedule(self.resource_id, self.schedule.message())
            except (DaemonError, DaemonUnavailable):
                pass
