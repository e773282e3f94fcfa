"""One client connection: newline-delimited JSON framing over a Unix stream socket.

Lines are split here and handed to the handler one at a time; replies go back in request order,
a waiting request holding back the replies behind it. What one connection may hold is capped:
MAX_PENDING unanswered requests (then it is no longer read), a line of protocol.MAX_LINE bytes,
unfinished input of MAX_BUFFERED bytes across all connections, a line left unfinished for
line_timeout, and no request for idle_timeout (see docs/protocol.md, "Framing and limits").

The common case, one whole request in one read answered at once, costs one split and one
write: no logging, no awaits.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from patience.daemon import protocol
from patience.daemon.admission import Waiter
from patience.daemon.protocol import ErrorResponse
from patience.daemon.registry import Client
from patience.durations import format_duration

__all__ = ["MAX_BUFFERED", "MAX_PENDING", "Connection", "Host", "InputBudget", "Session"]

MAX_PENDING = 64  # unanswered requests per connection before we stop reading from it
MAX_BUFFERED = 64 << 20  # unfinished input held across all connections


class Session:
    """Whom a connection speaks for: the peer's uid (-1 when the system does not tell), its
    client, and every client id it has spoken for (capped by the handlers)."""

    __slots__ = ("client", "client_ids", "uid")

    def __init__(self, uid: int = -1) -> None:
        self.uid = uid
        self.client: Client | None = None
        self.client_ids: set[str] = set()


class Host(Protocol):
    """What a connection needs from the daemon (patience.daemon.connections)."""

    def admit(self, peer: tuple[int, int] | None) -> str | None:
        """Why a new connection from `peer` (uid, gid) is refused, or None to serve it."""

    def opened(self, connection: Connection) -> None: ...

    def wait(self, waiter: Waiter, connection: Connection) -> None:
        """A request of `connection` waits: `connection.resolve` will be given its reply."""

    def closed(self, connection: Connection) -> None: ...


class InputBudget:
    """Unfinished input held across all connections, in bytes."""

    __slots__ = ("held", "limit")

    def __init__(self, limit: int = MAX_BUFFERED) -> None:
        self.held = 0
        self.limit = limit

    def take(self, size: int) -> bool:
        if self.held + size > self.limit:
            return False
        self.held += size
        return True

    def give(self, size: int) -> None:
        self.held -= size


class Connection(asyncio.Protocol):
    """One client connection: splits lines, keeps replies in request order. `handle` answers
    one request line (patience.daemon.handlers), or gives the Waiter whose reply comes later.
    A refused connection lingers `linger` seconds for the client to read why."""

    def __init__(
        self,
        host: Host,
        handle: Callable[[Session, bytes], bytes | Waiter],
        budget: InputBudget,
        linger: float,
    ) -> None:
        self.host = host
        self.handle = handle
        self.budget = budget
        self.linger = linger
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.session = Session()
        self.buffer = b""
        self.line_began = 0.0  # when the unfinished line in `buffer` began
        self.outbox: deque[bytes | Waiter] = deque()  # replies not yet sent, in request order
        self.last_active = 0.0  # the last request (not a blank line) or reply
        self.paused_by_outbox = False
        self.paused_by_writer = False
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = _peer(transport.get_extra_info("socket"))
        refusal = self.host.admit(peer)
        if refusal is not None:
            # Say why, then only wait for the client to hang up: closing on it while its first
            # request is unread would reset the connection and lose our reply.
            self.refused = True
            self.transport.write(protocol.encode(ErrorResponse(error=refusal)))
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(self.linger, self.transport.close)
            return
        self.session.uid = peer[0] if peer is not None else -1
        self.last_active = time.monotonic()
        self.host.opened(self)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():
            return
        now = began = time.monotonic()
        if self.buffer:
            began = self.line_began  # the unfinished line goes on
            self.budget.give(len(self.buffer))
            data = self.buffer + data
            self.buffer = b""
        if data.endswith(b"\n") and data.count(b"\n") == 1:  # the usual case: one request
            lines = [data[:-1]]
        else:
            lines = data.split(b"\n")
            rest = lines.pop()
            if rest:
                if len(rest) > protocol.MAX_LINE:
                    self._refuse(f"line longer than {protocol.MAX_LINE} bytes; closing")
                    return
                if not self.budget.take(len(rest)):
                    self._refuse("the daemon is busy (too much unfinished input); retry later")
                    return
                self.buffer = rest
                self.line_began = now if lines else began
        for line in lines:
            if len(line) > protocol.MAX_LINE:
                self._refuse(f"line longer than {protocol.MAX_LINE} bytes; closing")
                return
            if line.strip():
                self.last_active = now
                self._answer(self.handle(self.session, line))

    def _answer(self, reply: bytes | Waiter) -> None:
        if isinstance(reply, bytes):
            if not self.outbox:
                self.transport.write(reply)
                return
        else:
            self.host.wait(reply, self)
        self.outbox.append(reply)
        if len(self.outbox) >= MAX_PENDING and not self.paused_by_outbox:
            self.paused_by_outbox = True
            self._update_reading()

    def resolve(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting request got its answer: send it and whatever queued up behind it."""
        outbox = self.outbox
        for index, item in enumerate(outbox):
            if item is waiter:
                outbox[index] = reply
                break
        if self.transport.is_closing():
            return
        while outbox and isinstance(outbox[0], bytes):
            self.transport.write(outbox.popleft())  # type: ignore[arg-type]
        self.last_active = time.monotonic()
        if self.paused_by_outbox and len(outbox) < MAX_PENDING // 2:
            self.paused_by_outbox = False
            self._update_reading()

    def waiting(self) -> list[Waiter]:
        return [item for item in self.outbox if isinstance(item, Waiter)]

    def expire(self, now: float, idle_timeout: float, line_timeout: float) -> None:
        """Close the connection if a line stayed unfinished past `line_timeout` (with an error:
        a byte at a time must not hold a connection open) or no request came for
        `idle_timeout` (blank lines are none). One waiting for a reply is neither; a line's
        time counts from our last reply too, as we stop reading while replies are held back."""
        if self.outbox:
            return
        if self.buffer:  # a line begun is not idleness: only its own deadline closes it
            if now - max(self.line_began, self.last_active) > line_timeout:
                self._refuse(
                    f"no complete line within {format_duration(line_timeout)}"
                    " (daemon.line_timeout); closing"
                )
        elif now - self.last_active > idle_timeout:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused_by_writer = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.paused_by_writer = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport.is_closing():
            return
        if self.paused_by_outbox or self.paused_by_writer:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The client finished sending. A last line without newline is still a request (the
        Go tool's metrics ingestion ends that way); waiting requests are abandoned."""
        if self.buffer and not self.refused:
            rest, self.buffer = self.buffer, b""
            self.budget.give(len(rest))
            if rest.strip():
                self._answer(self.handle(self.session, rest))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer:
            self.budget.give(len(self.buffer))
            self.buffer = b""
        if not self.refused:
            self.host.closed(self)
        self.outbox.clear()

    def _refuse(self, message: str) -> None:
        if self.buffer:
            self.budget.give(len(self.buffer))
            self.buffer = b""
        self.transport.write(protocol.encode(ErrorResponse(error=message)))
        self.transport.close()


def _peer(sock: socket.socket | None) -> tuple[int, int] | None:
    """The (uid, gid) of the process at the other end, where the system tells (SO_PEERCRED)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, gid = struct.unpack("3i", creds)
    return uid, gid
