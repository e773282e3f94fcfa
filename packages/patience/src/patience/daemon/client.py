"""A synchronous client for the daemon, used by `rpr`, `patience` and `patience-daemon status`.

Protocol 2.0 over the Unix socket, one request and one reply line at a time. Every call has a
short timeout; a connection the daemon closed while idle is reopened once, transparently.
Imported only when a tool talks to the daemon, and kept light: socket and json, no asyncio or
msgspec.
"""

from __future__ import annotations

import json
import os
import socket

from patience.daemon import paths
from patience.settings import DEFAULT_ALGORITHM, Limit

__all__ = ["METRICS_BATCH", "DaemonClient", "DaemonError", "DaemonUnavailable", "Grant"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import NoReturn

METRICS_BATCH = 500  # records per metrics message (the daemon takes up to 1000)
MAX_RETRY_AFTER = 86400.0  # seconds of a server's hint sent in `feedback` (the daemon caps too)
_MAX_REPLY = 64 << 20


class DaemonUnavailable(Exception):
    """The daemon cannot be reached, stopped answering or went away mid-request."""


class DaemonError(Exception):
    """The daemon answered with an error; the message is its text."""


class Grant:
    """The answer to `acquire`: granted or not, and the limit in force (None when unlimited)
    with `limit_source`, where the daemon found it."""

    __slots__ = (
        "ahead",
        "estimated_wait",
        "granted",
        "limit",
        "limit_source",
        "reason",
        "remaining",
        "reset_after",
        "retry_after",
        "share",
        "tokens",
        "waited",
    )

    def __init__(self, reply: dict[str, object]) -> None:
        self.granted = bool(reply["granted"])
        self.tokens = int(reply["tokens"])  # type: ignore[call-overload]
        self.retry_after = float(reply["retry_after"])  # type: ignore[arg-type]
        self.reset_after = float(reply["reset_after"])  # type: ignore[arg-type]
        self.remaining: int | None = reply.get("remaining")  # type: ignore[assignment]
        count, window, algorithm = (reply.get(k) for k in ("limit", "window", "algorithm"))
        self.limit: Limit | None = None
        if isinstance(count, int) and isinstance(window, int | float):
            self.limit = Limit(count, window, str(algorithm or DEFAULT_ALGORITHM))
        self.limit_source: str | None = reply.get("limit_source")  # type: ignore[assignment]
        self.waited = float(reply.get("waited") or 0.0)  # type: ignore[arg-type]
        self.reason: str | None = reply.get("reason")  # type: ignore[assignment]
        # On a refusal: the requests queued ahead, and the daemon's estimate of the wait.
        self.ahead: int | None = reply.get("ahead")  # type: ignore[assignment]
        self.estimated_wait: float | None = reply.get("estimated_wait")  # type: ignore[assignment]
        # This client's tokens per window when it must go on without the daemon.
        self.share: int | None = reply.get("share")  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Grant(granted={self.granted}, tokens={self.tokens}, remaining={self.remaining},"
            f" limit={self.limit!r}, retry_after={self.retry_after:.3f})"
        )


class DaemonClient:
    """One connection to the daemon, opened on first use.

    `tool` is "patience" or "repeater"; `client_id` identifies this process to the daemon
    (fair sharing is per client id)."""

    def __init__(
        self,
        socket_path: str,
        tool: str,
        client_id: str | None = None,
        timeout: float = 1.0,
    ) -> None:
        self.socket_path = socket_path
        self.tool = tool
        self.client_id = client_id or f"{tool}-{socket.gethostname()}-{os.getpid()}"
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._ahead = False  # an acquire was sent whose reply is not read yet
        self._timeout = timeout  # the socket's own timeout

    def __enter__(self) -> DaemonClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buffer = b""
        self._ahead = False  # its reply, if any, went with the connection

    def connect(self) -> None:
        """Open the connection and do the 2.0 handshake (done automatically on first use)."""
        if self._sock is not None:
            return
        if not paths.socket_owner_ok(self.socket_path, os.geteuid()):
            raise DaemonUnavailable(
                f"{self.socket_path} belongs to another user; refusing to talk to it"
            )
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        self._timeout = self.timeout
        try:
            sock.connect(self.socket_path)
        except OSError as exc:
            sock.close()
            reason = exc.strerror or type(exc).__name__
            raise DaemonUnavailable(f"cannot connect to {self.socket_path}: {reason}") from None
        self._sock = sock
        hello: dict[str, object] = {
            "type": "handshake",
            "versions": ["2.0"],
            "client_id": self.client_id,
            "tool": self.tool,
        }
        try:
            reply = self._exchange(hello, self.timeout)
        except DaemonError as exc:  # too many connections, not allowed, stopping
            self.close()
            raise DaemonUnavailable(f"the daemon on {self.socket_path} refused us: {exc}") from None
        if reply.get("version") != "2.0":
            self.close()
            raise DaemonUnavailable(f"the daemon on {self.socket_path} does not speak protocol 2.0")

    def request(
        self, message: dict[str, object], timeout: float | None = None
    ) -> dict[str, object]:
        """Send one request and return its reply; an error reply raises DaemonError."""
        assert not self._ahead, "a request before the reply to acquire_ahead() was read"
        wait = self.timeout if timeout is None else timeout
        if self._sock is None:
            self.connect()
            return self._exchange(message, wait)
        try:
            return self._exchange(message, wait, may_retry=True)
        except _Closed:
            self.close()  # closed while idle (idle timeout, restart): reopen once
            self.connect()
            return self._exchange(message, wait)

    # ---- the messages --------------------------------------------------------------------------

    def acquire(
        self,
        resource_id: str,
        tokens: int = 1,
        max_wait: float = 0.0,
        limit: Limit | None = None,
    ) -> Grant:
        """Take tokens, letting the daemon queue us for up to `max_wait` seconds. `limit`
        declares this client's own limit (used when none is configured)."""
        message = _acquire(resource_id, tokens, max_wait, limit)
        return Grant(self.request(message, max_wait + self.timeout))

    def acquire_ahead(self, resource_id: str, tokens: int = 1) -> None:
        """Ask for tokens now without waiting for the answer: the daemon decides while the
        caller goes on (a run in flight), and `ahead()` reads the answer later. The daemon
        does not queue it (max_wait 0). Until `ahead()`, no other request may be made on
        this connection (their replies would come after this one)."""
        if self._sock is None:
            self.connect()
        self._ahead = True
        try:
            self._send(_acquire(resource_id, tokens, 0.0, None), may_retry=True)
        except _Closed:
            pass  # it never reached the daemon: `ahead()` says so

    @property
    def asked_ahead(self) -> bool:
        """Whether an `acquire_ahead` waits for `ahead()`."""
        return self._ahead

    def ahead(self) -> Grant | None:
        """The answer to `acquire_ahead`; None when the request never reached the daemon
        (the connection was closed before it: an idle timeout, a restart), so that the
        caller asks again the usual way."""
        assert self._ahead, "ahead() without acquire_ahead()"
        self._ahead = False
        if self._sock is None:
            return None
        try:
            return Grant(self._answer(self.timeout, may_retry=True))
        except _Closed:
            return None

    def report_grants(
        self,
        resource_id: str,
        times: Sequence[float],
        limit: Limit | None = None,
    ) -> int:
        """Tell the daemon this client's grants of the last window (Unix seconds), after an
        outage; returns how many it counts. `limit` as in `acquire`."""
        message: dict[str, object] = {
            "type": "report_grants",
            "resource_id": resource_id,
            "times": list(times),
        }
        _declare(message, limit)
        counted = self.request(message)["counted"]
        return counted if isinstance(counted, int) else 0

    def feedback(
        self,
        resource_id: str,
        signal: str,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> dict[str, object]:
        """Report a throttle signal a run met (docs/adaptive-limits.md): the daemon pauses
        the resource for `retry_after` and learns its limit. Returns the reply."""
        message: dict[str, object] = {
            "type": "feedback",
            "resource_id": resource_id,
            "signal": signal,
        }
        if retry_after is not None:
            message["retry_after"] = max(0.0, min(retry_after, MAX_RETRY_AFTER))
        if status is not None and 100 <= status <= 599:
            message["status"] = status
        return self.request(message)

    def send_metrics(self, records: Sequence[dict[str, object]]) -> int:
        """Store execution records (the ExecutionMetrics schema); returns how many the daemon
        acknowledged, i.e. committed."""
        accepted = 0
        for start in range(0, len(records), METRICS_BATCH):
            batch = list(records[start : start + METRICS_BATCH])
            reply = self.request({"type": "metrics", "records": batch}, self.timeout * 5)
            accepted += int(reply["accepted"])  # type: ignore[call-overload]
        return accepted

    def register_schedule(self, resource_id: str, schedule: dict[str, object]) -> None:
        self.request(
            {"type": "register_schedule", "resource_id": resource_id, "schedule": schedule}
        )

    def resource_state(self, resource_id: str | None = None) -> list[dict[str, object]]:
        message: dict[str, object] = {"type": "resource_state"}
        if resource_id is not None:
            message["resource_id"] = resource_id
        return self.request(message)["resources"]  # type: ignore[return-value]

    def query(
        self,
        kind: str,
        resource_id: str | None = None,
        start: float | None = None,
        end: float | None = None,
        tools: Iterable[str] | None = None,
    ) -> list[dict[str, object]]:
        """`kind`: resource_summary, tool_comparison or rate_limit_usage."""
        message: dict[str, object] = {"type": "query", "query": kind}
        if resource_id is not None:
            message["resource_id"] = resource_id
        if start is not None or end is not None:
            message["time_range"] = {"start": start, "end": end}
        if tools is not None:
            message["tools"] = list(tools)
        return self.request(message, self.timeout * 5)["results"]  # type: ignore[return-value]

    def ping(self) -> dict[str, object]:
        return self.request({"type": "ping"})

    def status(self) -> dict[str, object]:
        return self.request({"type": "status"})

    # ---- the wire ----------------------------------------------------------------------------

    def _exchange(
        self, message: dict[str, object], timeout: float, may_retry: bool = False
    ) -> dict[str, object]:
        self._send(message, may_retry)
        return self._answer(timeout, may_retry)

    def _send(self, message: dict[str, object], may_retry: bool) -> None:
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except OSError as exc:
            self._lost(exc, may_retry)

    def _answer(self, timeout: float, may_retry: bool) -> dict[str, object]:
        """The next reply line on the connection, decoded; an error reply raises."""
        sock = self._sock
        assert sock is not None
        if timeout != self._timeout:  # setting it costs a system call
            sock.settimeout(timeout)
            self._timeout = timeout
        try:
            line = self._read_line(sock, may_retry)
        except _Closed:
            raise
        except TimeoutError:
            self.close()  # a late reply would answer the wrong request: start afresh next time
            raise DaemonUnavailable(
                f"the daemon on {self.socket_path} did not answer within {timeout:g}s"
            ) from None
        except OSError as exc:
            self._lost(exc, may_retry)
        reply = json.loads(line)
        if not isinstance(reply, dict):
            self.close()
            raise DaemonUnavailable(f"the daemon on {self.socket_path} sent a malformed reply")
        if reply.get("type") == "error":
            if reply.get("code") == "stopping":  # it is going away: as if it were gone
                self.close()
                raise DaemonUnavailable(f"the daemon on {self.socket_path} is stopping")
            raise DaemonError(str(reply.get("error")))
        return reply

    def _lost(self, exc: OSError, may_retry: bool) -> NoReturn:
        self.close()
        if may_retry:
            raise _Closed from None
        raise DaemonUnavailable(f"lost the daemon on {self.socket_path}: {exc}") from None

    def _read_line(self, sock: socket.socket, may_retry: bool) -> bytes:
        buffer = self._buffer
        while True:
            end = buffer.find(b"\n")
            if end >= 0:
                self._buffer = buffer[end + 1 :]
                return buffer[:end]
            if len(buffer) > _MAX_REPLY:
                self.close()
                raise DaemonUnavailable("the daemon's reply is too large")
            chunk = sock.recv(65536)
            if not chunk:
                self.close()
                if may_retry and not buffer:
                    raise _Closed
                raise DaemonUnavailable(f"the daemon on {self.socket_path} closed the connection")
            buffer += chunk


def _acquire(
    resource_id: str, tokens: int, max_wait: float, limit: Limit | None
) -> dict[str, object]:
    message: dict[str, object] = {
        "type": "acquire",
        "resource_id": resource_id,
        "tokens": tokens,
        "max_wait": max_wait,
    }
    _declare(message, limit)
    return message


def _declare(message: dict[str, object], limit: Limit | None) -> None:
    """Add the client's own limit to a request that may declare one."""
    if limit is not None:
        message.update(limit=limit.count, window=limit.window, algorithm=limit.algorithm)


class _Closed(Exception):
    """The daemon had closed an idle connection before our request reached it."""
