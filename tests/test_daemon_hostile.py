"""Bounded by the daemon, never by the client: hostile but well-formed traffic (connections
that drip a byte at a time, floods of client ids, a hundred thousand resources) cannot lock
others out or stall the daemon. Each test drives a real daemon over its real socket."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from daemon_support import Daemon, Raw, running
from patience.config.resources import ResourceLimit
from patience.daemon import coordinator as coordinator_module
from patience.daemon import registry
from patience.daemon.coordinator import Coordinator, CoordinatorError, Waiter
from patience.daemon.framing import Connection, InputBudget
from patience.daemon.protocol import Acquire
from patience.settings import Limit

HANDSHAKE = '{{"type":"handshake","versions":["2.0"],"client_id":"{}","tool":"repeater"}}\n'


def pipelined(raw: Raw, lines: list[str], batch: int = 2000) -> Iterator[dict[str, object]]:
    """Send `lines` in batches without waiting between requests; the replies, in order.
    Each batch is sent from a thread while its replies are read: a client that only reads
    once it has sent everything deadlocks itself once the replies outgrow the socket buffers
    (the daemon rightly stops reading a connection that does not read its replies)."""
    for start in range(0, len(lines), batch):
        chunk = lines[start : start + batch]
        sender = threading.Thread(target=raw.send, args=("".join(chunk),), daemon=True)
        sender.start()
        for _ in chunk:
            reply = raw.line()
            assert reply, "the daemon closed the connection"
            yield json.loads(reply)
        sender.join()


def served_within(daemon: Daemon, seconds: float) -> float:
    """How long a well-behaved client, retrying every 0.1s, takes to get a pong (asserts it
    gets one within `seconds`)."""
    started = time.monotonic()
    refusals = []
    while time.monotonic() - started < seconds:
        with Raw(daemon.socket, timeout=5.0) as raw:
            reply = raw.ask('{"type":"ping"}')
            if reply["type"] == "pong":
                return time.monotonic() - started
            refusals.append(reply)
        time.sleep(0.1)
    raise AssertionError(f"not served within {seconds}s: {refusals[-1:]}")


class Drippers:
    """Connections writing one byte every `pause`: half never finish a line, half send only
    blank lines. A thread keeps them dripping until each is closed by the daemon."""

    def __init__(self, daemon: Daemon, count: int, pause: float = 0.3) -> None:
        self.sockets: list[socket.socket] = []
        for i in range(count):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            # The first byte at once: a drip thread starved past the idle timeout (a loaded
            # machine) must not turn a half-written line into a silent idle connection.
            with contextlib.suppress(OSError):  # refused (too many) and closed already
                sock.send(b"\n" if i % 2 else b"{")
            self.sockets.append(sock)
        self.pause = pause
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._drip, daemon=True)
        self.thread.start()

    def _drip(self) -> None:
        open_ = dict(enumerate(self.sockets))
        while open_ and not self.stop.wait(self.pause):
            for i, sock in list(open_.items()):
                try:
                    sock.send(b"\n" if i % 2 else b" ")
                except OSError:  # closed by the daemon
                    del open_[i]

    def replies(self) -> list[bytes]:
        """What each connection was told before the daemon closed it."""
        self.stop.set()
        self.thread.join()
        out = []
        for sock in self.sockets:
            sock.settimeout(10.0)
            data = b""
            try:
                while chunk := sock.recv(65536):
                    data += chunk
            except ConnectionResetError:
                pass
            sock.close()
            out.append(data)
        return out


def test_slow_drip_connections_cannot_hold_every_slot() -> None:
    """40 connections dripping a byte every 0.3s against 32 slots: each unfinished line meets
    its deadline (with an error naming it), blank lines are no activity (the idle timeout
    closes them), so a well-behaved client is served within seconds. A connection waiting on a
    token far longer than both timeouts is not idle and gets its token."""
    config = """
[daemon]
max_connections = 32
idle_timeout = "2s"
line_timeout = "2s"

[rate_limiting.resources]
"slow" = { limit = 1, window = "10s" }
"""
    with running(config) as daemon:
        with daemon.raw(timeout=20) as waiting:
            assert waiting.ask('{"type":"acquire","resource_id":"slow"}')["granted"] is True
            waiting.send('{"type":"acquire","resource_id":"slow","max_wait":15}\n')
            drippers = Drippers(daemon, 40)
            time.sleep(1.0)  # every slot taken: a newcomer is refused
            with daemon.raw() as newcomer:
                assert "too many connections (32)" in str(newcomer.ask('{"type":"ping"}'))
            assert served_within(daemon, 20.0) < 6.0  # before the waiting one's slot frees
            granted = json.loads(waiting.line())
            assert granted["granted"] is True and granted["waited"] > 8.0
        replies = drippers.replies()
        partial = [r for i, r in enumerate(replies) if i % 2 == 0]
        blank = [r for i, r in enumerate(replies) if i % 2 == 1]
        deadline = b"no complete line within 2s (daemon.line_timeout); closing"
        too_many = b"too many connections (32)"
        assert all(deadline in r or too_many in r for r in partial), repr(replies)
        assert sum(deadline in r for r in partial) >= 12
        assert all(r == b"" or too_many in r for r in blank), blank


def test_a_flood_of_client_ids_on_one_connection_locks_nobody_out() -> None:
    """100,000 handshakes with distinct client ids, pipelined on one connection: past 16 ids
    each is refused with an error saying why, so a fresh client still handshakes and acquires
    at once, and the daemon's memory stays bounded."""
    with running() as daemon:
        before = daemon.rss_kib()
        with daemon.raw(timeout=60) as hostile:
            lines = [HANDSHAKE.format(f"hostile-{i}") for i in range(100_000)]
            replies = list(pipelined(hostile, lines, batch=5000))
        assert [r["type"] for r in replies[:16]] == ["handshake_response"] * 16
        assert replies[16] == {
            "type": "error",
            "error": "too many client ids on one connection (16);"
            " open another connection for another client",
        }
        with daemon.client(client_id="legit") as legit:
            started = time.monotonic()
            assert legit.acquire("api:legit").granted
            assert time.monotonic() - started < 2.0
        assert daemon.rss_kib() - before < 30_000


def test_client_ids_from_many_connections_are_capped_per_user() -> None:
    """100,000 client ids over 6,250 short connections of one user: the idle ones (least
    recently seen first) make room for new ones past 10,000 per user, so a fresh client is
    served at once and the daemon tracks at most 10,000 ids for that user."""
    with running() as daemon:
        for n in range(6250):
            with daemon.raw() as hostile:
                lines = [HANDSHAKE.format(f"hostile-{n}-{i}") for i in range(16)]
                assert all(r["type"] == "handshake_response" for r in pipelined(hostile, lines))
        with daemon.client(client_id="legit") as legit:
            assert legit.acquire("api:legit").granted
            assert legit.status()["clients"] <= 10_000


def test_housekeeping_with_100k_resources_does_not_stall_requests() -> None:
    """100,000 resources, each with a token taken from its hourly limit by clients now gone:
    each housekeeping pass (every second) looks at a bounded slice of them, so pings do not
    wait behind it: at most one in 5s (noise) takes over 35ms, where the walk over all of
    them that it replaced held every pass's pings for about 70ms here. Usage is flushed every
    0.5s (not 5s), so that the test need not wait for the flush of those acquires."""
    config = """
[daemon]
client_ttl = "1s"

[rate_limiting.resources]
"api:*" = { limit = 10, window = "1h" }
"""
    with running(config, intervals={"flush": 0.5}) as daemon:
        for c in range(4):
            with daemon.raw(timeout=60) as client:
                client.ask(HANDSHAKE.format(f"busy-{c}").strip())
                lines = [
                    f'{{"type":"acquire","resource_id":"api:r{c}-{i}"}}\n' for i in range(25_000)
                ]
                assert all(r["granted"] for r in pipelined(client, lines))
        with daemon.raw() as raw:
            assert raw.ask('{"type":"status"}')["resources"] == 100_000
            time.sleep(2.5)  # past the usage flush of those acquires and the clients' expiry
            waits = []
            until = time.monotonic() + 5.0
            while time.monotonic() < until:
                started = time.monotonic()
                assert raw.ask('{"type":"ping"}')["type"] == "pong"
                waits.append(time.monotonic() - started)
                time.sleep(0.002)
            assert raw.ask('{"type":"status"}')["resources"] == 100_000  # all kept: limits
        slow = [f"{wait * 1000:.0f}ms" for wait in waits if wait > 0.035]
        assert len(slow) <= 1, f"pings held up by housekeeping: {slow}"


# ---- the coordinator's bookkeeping, with an injected clock -------------------------------------


def test_a_new_client_id_evicts_the_least_recently_seen_idle_one_of_its_uid(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(registry, "MAX_CLIENTS_PER_OWNER", 3)
    coord = Coordinator({"r": ResourceLimit(Limit(1, 60.0))}, "diophantine", 60.0)
    a, b, c = (coord.connect(name, "repeater", 0.0, owner=1) for name in "abc")
    assert coord.acquire(a, Acquire(resource_id="r"), 0.0).granted  # type: ignore[union-attr]
    assert isinstance(coord.acquire(a, Acquire(resource_id="r", max_wait=100.0), 0.0), Waiter)
    coord.disconnect(a, 1.0)  # gone, but its request still waits: not idle
    coord.disconnect(c, 2.0)
    coord.disconnect(b, 3.0)
    coord.connect("other-uid", "repeater", 4.0, owner=2)  # another uid's count is its own
    coord.connect("d", "repeater", 5.0, owner=1)
    assert set(coord.clients) == {"a", "b", "d", "other-uid"}  # c: idle longest
    coord.connect("e", "repeater", 6.0, owner=1)
    assert set(coord.clients) == {"a", "d", "e", "other-uid"}
    with pytest.raises(CoordinatorError, match=r"too many clients \(3\) of uid 1 are connected"):
        coord.connect("f", "repeater", 7.0, owner=1)
    coord.poll(100.0)  # a's wait ends: a is idle now, and goes first
    coord.connect("f", "repeater", 101.0, owner=1)
    assert set(coord.clients) == {"d", "e", "f", "other-uid"}


def test_housekeeping_checks_resources_a_slice_per_pass_and_keeps_what_is_in_use(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(coordinator_module, "SWEEP", 10)
    coord = Coordinator({}, "diophantine", 1.0)
    user = coord.connect("user", "repeater", 0.0)
    for i in range(50):
        coord.acquire(user, Acquire(resource_id=f"r{i}"), 0.0)
    coord.disconnect(user, 0.0)
    coord.connect("keeper", "repeater", 0.0)
    coord.acquire(coord.clients["keeper"], Acquire(resource_id="r7"), 0.0)
    counts = []
    for second in range(2, 20):
        if second == 5:  # used mid-round: kept, though the round began before the use
            coord.acquire(coord.clients["keeper"], Acquire(resource_id="r3"), 4.5)
        coord.expire(float(second), 0.0)
        counts.append(len(coord.resources))
    assert "user" not in coord.clients
    assert all(before - after <= 10 for before, after in zip([50, *counts], counts, strict=False))
    assert set(coord.resources) == {"r3", "r7"}


class _Transport:
    """What Connection.expire needs of a transport: what was written, and whether it closed."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True


def test_a_line_begun_late_is_closed_by_its_deadline_with_the_error_not_as_idle() -> None:
    """A connection whose first byte came a while after it was accepted (a loaded machine) is
    past the idle timeout before its line is past the line timeout: it must still be told why
    when it is closed, and not before its line's own deadline."""
    host = None  # expire never asks the host
    connection = Connection(host, lambda session, line: b"", InputBudget(), 0.0)  # type: ignore[arg-type]
    transport = _Transport()
    connection.transport = transport  # type: ignore[assignment]
    connection.last_active, connection.line_began, connection.buffer = 100.0, 101.5, b"{"
    connection.expire(102.5, idle_timeout=2.0, line_timeout=2.0)  # idle 2.5 s, line 1 s
    assert not transport.closed and transport.written == b""
    connection.expire(103.6, idle_timeout=2.0, line_timeout=2.0)  # line 2.1 s
    assert transport.closed
    assert b"no complete line within 2s (daemon.line_timeout); closing" in transport.written
    connection.buffer, transport.closed = b"", False  # no line begun: idleness closes, silently
    connection.expire(103.6, idle_timeout=2.0, line_timeout=2.0)
    assert transport.closed
