"""No execution record is stored twice: each carries an id its client made, and the daemon
stores a resent record once, whether the client resends a batch itself or a tool resends it
after the daemon committed it but the acknowledgement was lost."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from daemon_support import Daemon, running
from integration_support import executions, world
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.storage import MetricsStore


def record(n: int, record_id: str | None) -> dict[str, object]:
    found: dict[str, object] = {
        "tool": "repeater",
        "resource_id": "rec:twice",
        "start_time": 1_800_000_000.0 + n,
        "duration": 0.5,
        "success": True,
        "execution_number": n,
    }
    if record_id is not None:
        found["record_id"] = record_id
    return found


def totals(daemon: Daemon, resource_id: str) -> tuple[int, int]:
    """Executions stored (the metrics query) and counted (the resource state)."""
    with daemon.client() as client:
        [summary] = client.query("resource_summary", resource_id=resource_id)
        [state] = client.resource_state(resource_id)
    return int(summary["total_executions"]), int(state["total_executions"])  # type: ignore[call-overload]


def test_the_same_batch_sent_twice_is_stored_once() -> None:
    batch = [record(n, f"id-{n}") for n in range(3)]
    with running() as daemon:
        with daemon.client("repeater", "twice") as client:
            assert client.send_metrics(batch) == 3
            assert client.send_metrics(batch) == 3  # acknowledged again: they are stored
        with daemon.client("repeater", "other") as client:  # whoever resends it
            assert client.send_metrics([*batch[1:], record(3, "id-3")]) == 3
        assert totals(daemon, "rec:twice") == (4, 4)


def test_a_batch_repeating_an_id_stores_it_once_and_records_without_id_always() -> None:
    with running() as daemon, daemon.client() as client:
        assert client.send_metrics([record(1, "a"), record(2, "a"), record(3, None)]) == 3
        assert client.send_metrics([record(3, None)]) == 1
        assert totals(daemon, "rec:twice") == (3, 3)


def rec(record_id: str | None) -> ExecutionMetrics:
    return ExecutionMetrics(
        tool="patience", resource_id="r", start_time=5.0, duration=1.0, success=True,
        record_id=record_id,
    )  # fmt: skip


def test_the_store_ignores_a_stored_id(tmp_path: Path) -> None:
    store = MetricsStore(str(tmp_path / "m.db"), retention=1e12, retention_count=1000)
    assert store.add([rec("x"), rec("y"), rec(None)], "c") == 3
    assert [r.record_id for r in store.unseen([rec("x"), rec("z"), rec("z"), rec(None)])] == [
        "z",
        None,
    ]
    assert store.add([rec("x"), rec("z"), rec(None)], "c") == 2
    assert store.count() == 5


OLD_SCHEMA = """
CREATE TABLE executions (
    id INTEGER PRIMARY KEY, tool TEXT NOT NULL, resource_id TEXT NOT NULL,
    client_id TEXT NOT NULL, command TEXT NOT NULL, start_time REAL NOT NULL,
    duration REAL NOT NULL, success INTEGER NOT NULL, exit_code INTEGER NOT NULL,
    attempt_number INTEGER NOT NULL, execution_number INTEGER NOT NULL, labels TEXT NOT NULL
);
INSERT INTO executions VALUES (1, 'patience', 'r', 'c', '[]', 1.0, 1.0, 1, 0, 1, 0, '{}');
"""


def test_a_database_from_before_record_ids_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(OLD_SCHEMA)
    path.chmod(0o600)  # as the daemon made it: a database others may read is refused
    store = MetricsStore(str(path), retention=1e12, retention_count=1000)
    assert store.count() == 1  # the old record stays
    assert store.add([rec("x"), rec("x"), rec(None)], "c") == 2
    store.close()
    again = MetricsStore(str(path), retention=1e12, retention_count=1000)  # opens as new
    assert again.add([rec("x")], "c") == 0
    assert again.count() == 3


class DropFirstAck:
    """A Unix-socket relay in front of the daemon that forwards everything, except that the
    daemon's reply to the first metrics batch is swallowed and the connection cut: to the
    tool, the daemon died after committing the batch and before acknowledging it."""

    def __init__(self, path: str, upstream: str) -> None:
        self.path = path
        self.upstream = upstream
        self.metrics_requests: list[bytes] = []
        self.dropped = 0
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen(16)
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self.listener.close()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        with conn, socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as up:
            up.connect(self.upstream)
            requests, replies = conn.makefile("rb"), up.makefile("rb")
            for line in requests:
                up.sendall(line)
                reply = replies.readline()
                with self.lock:
                    is_metrics = b'"type":"metrics"' in line
                    if is_metrics:
                        self.metrics_requests.append(line)
                    drop = is_metrics and self.dropped == 0
                    self.dropped += drop
                if drop:  # committed by the daemon; the tool never hears of it
                    conn.shutdown(socket.SHUT_RDWR)
                    return
                conn.sendall(reply)


@contextlib.contextmanager
def relay(path: str, upstream: str) -> Iterator[DropFirstAck]:
    proxy = DropFirstAck(path, upstream)
    try:
        yield proxy
    finally:
        proxy.close()


def test_a_tool_resending_a_committed_batch_leaves_each_record_once(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            proxy_path = str(w.dir / "relay.sock")
            with relay(proxy_path, w.socket) as proxy:
                result = w.rpr(
                    "count", "--times", "10", "--every", "100ms", "--daemon",
                    "--daemon-socket", proxy_path, "--resource-id", "rec:e2e",
                    "--no-daemon-auto-start", "--", "true",
                )  # fmt: skip
                assert result.returncode == 0, result.stderr
                assert proxy.dropped == 1
            batches = [json.loads(line)["records"] for line in proxy.metrics_requests]
            lost = {r["record_id"] for r in batches[0]}  # committed, not acknowledged
            assert lost and any(lost <= {r["record_id"] for r in b} for b in batches[1:])
            records = executions(daemon.db, "rec:e2e")
            assert len(records) == 10
            assert len({r["record_id"] for r in records}) == 10
            assert all(len(str(r["record_id"])) == 32 for r in records)  # 128 random bits
            assert totals(daemon, "rec:e2e") == (10, 10)
        finally:
            daemon.ensure_stopped()
