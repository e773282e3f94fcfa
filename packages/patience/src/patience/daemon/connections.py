"""The daemon's open connections: who may connect, their requests waiting for tokens, and the
timer that answers those when the coordinator resolves them.

Peers are checked by their credentials (SO_PEERCRED): the daemon's own uid, root and members of
`daemon.peer_group` are served; connections past `daemon.max_connections` are refused with the
reason. A request that waits for tokens holds its connection's later replies (framing keeps
them in order) until the timer, armed for the coordinator's next wake-up, resolves it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from patience.daemon import protocol
from patience.daemon.admission import Resolved, Waiter
from patience.daemon.coordinator import Coordinator
from patience.daemon.framing import Connection
from patience.daemon.protocol import ErrorResponse

__all__ = ["Connections", "Limits"]

log = logging.getLogger("patience.daemon")


class Limits:
    """What connections may do, from the configuration (reloadable): how many at once, and how
    long one may stay silent or leave a line unfinished (seconds)."""

    __slots__ = ("idle_timeout", "line_timeout", "max_connections")

    def __init__(self, max_connections: int, idle_timeout: float, line_timeout: float) -> None:
        self.max_connections = max_connections
        self.idle_timeout = idle_timeout
        self.line_timeout = line_timeout


class Connections:
    """The framing's host (patience.daemon.framing.Host). `kick(now)` asks the remote
    admission (Redis) about the waiters whose turn has come, when there is one."""

    def __init__(
        self,
        coordinator: Coordinator,
        limits: Limits,
        peers: Callable[[int, int], bool],
        kick: Callable[[float], Resolved] | None = None,
    ) -> None:
        self.limits = limits
        self.open: set[Connection] = set()
        self.stopping = False
        self._coordinator = coordinator
        self._peer_allowed = peers
        self._kick = kick
        self._waiters: dict[Waiter, Connection] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")

    # ---- the framing's host -------------------------------------------------------------------

    def admit(self, peer: tuple[int, int] | None) -> str | None:
        """Why a new connection from `peer` (uid, gid) is refused, or None to serve it."""
        if self.stopping:
            return "the daemon is stopping; retry later"
        if peer is not None:
            uid, gid = peer
            if not self._peer_allowed(uid, gid):
                log.warning("refused a connection from uid %d", uid)
                return f"permission denied: uid {uid} may not use this daemon"
        if len(self.open) >= self.limits.max_connections:
            return f"too many connections ({self.limits.max_connections}); retry later"
        return None

    def opened(self, connection: Connection) -> None:
        self.open.add(connection)

    def wait(self, waiter: Waiter, connection: Connection) -> None:
        self._waiters[waiter] = connection
        self.arm()

    def closed(self, connection: Connection) -> None:
        """A connection went: its waiting requests leave their queues, its client may idle."""
        if connection not in self.open:
            return
        now = time.monotonic()
        for waiter in connection.waiting():
            self._waiters.pop(waiter, None)
            self._coordinator.cancel(waiter, now)
        client = connection.session.client
        if client is not None:
            self._coordinator.disconnect(client, now)
        self.open.discard(connection)
        self.arm()

    # ---- waiting requests ---------------------------------------------------------------------

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def arm(self) -> None:
        """Make sure the timer fires by the coordinator's next wake-up."""
        wake = self._coordinator.next_wakeup()
        if wake >= self._timer_at or wake == float("inf"):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().call_at(wake, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = time.monotonic()  # asyncio's loop.time() is this clock too
        # Redis is asked first, so that a request that may not wait is asked before its deadline.
        resolved = self._kick(now) if self._kick is not None else []
        self.deliver(resolved + self._coordinator.poll(now))

    def deliver(self, resolved: Resolved) -> None:
        """Send the answers to the connections still waiting for them; re-arm the timer."""
        for waiter, response in resolved:
            connection = self._waiters.pop(waiter, None)
            if connection is not None:
                connection.resolve(waiter, protocol.encode(response))
        self.arm()

    # ---- housekeeping and stop ----------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Close the connections silent, or with a line unfinished, for too long."""
        for connection in list(self.open):
            connection.expire(now, self.limits.idle_timeout, self.limits.line_timeout)

    async def close_all(self, grace: float) -> None:
        """Answer every waiting request, let replies drain for up to `grace` seconds, then
        close. The answer's code says the daemon is going away: a client treats it as
        unavailability (falls back, reconnects), not as a refusal."""
        self.stopping = True
        stopping = protocol.encode(
            ErrorResponse(error="the daemon is stopping; retry later", code=protocol.STOPPING)
        )
        for waiter, connection in list(self._waiters.items()):
            connection.resolve(waiter, stopping)
        self._waiters.clear()
        for connection in list(self.open):
            connection.transport.close()
        deadline = time.monotonic() + grace
        while self.open and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.open):
            connection.transport.abort()
