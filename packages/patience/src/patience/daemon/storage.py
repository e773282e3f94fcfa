"""The metrics store: execution records and rate-limit usage in an embedded SQLite database.

WAL journal: a batch is committed before the daemon acknowledges it, so an acknowledged record
survives the daemon being killed (the commit is in the operating system's hands by then).
Retention keeps the database bounded by age and by record count.

A record's `record_id`, made by the client, is unique here: a client that resends a batch
whose acknowledgement it never received (the daemon died after committing it) has it stored
once. A database made before the column existed gains it when opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Sequence

from patience.daemon.protocol import ExecutionMetrics

_SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (
    id INTEGER PRIMARY KEY,
    tool TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    command TEXT NOT NULL,
    start_time REAL NOT NULL,
    duration REAL NOT NULL,
    success INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    attempt_number INTEGER NOT NULL,
    execution_number INTEGER NOT NULL,
    labels TEXT NOT NULL,
    record_id TEXT
);
CREATE INDEX IF NOT EXISTS executions_resource_time ON executions (resource_id, start_time);
CREATE INDEX IF NOT EXISTS executions_time ON executions (start_time);
CREATE TABLE IF NOT EXISTS usage (
    minute INTEGER NOT NULL,
    resource_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    granted INTEGER NOT NULL,
    denied INTEGER NOT NULL,
    waited INTEGER NOT NULL,
    wait_total REAL NOT NULL,
    PRIMARY KEY (minute, resource_id, tool)
);
"""
_PRUNE_EVERY = 1000  # records added between count-retention checks

Row = dict[str, object]


UsageRow = tuple[int, str, str, int, int, int, float]
"""(Unix minute, resource id, tool, tokens granted, requests denied, requests that waited,
their total wait in seconds)"""


class MetricsStore:
    def __init__(self, path: str, retention: float, retention_count: int) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = path
        self.retention = retention
        self.retention_count = retention_count
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600))  # private from birth
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # its -wal and -shm files copy this mode
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(executions)")}
        if "record_id" not in columns:  # a database from before record ids
            self._db.execute("ALTER TABLE executions ADD COLUMN record_id TEXT")
        self._db.execute(  # several NULLs (records without an id) are allowed
            "CREATE UNIQUE INDEX IF NOT EXISTS executions_record ON executions (record_id)"
        )
        self._since_prune = 0

    def close(self) -> None:
        self._db.close()

    def unseen(self, records: Sequence[ExecutionMetrics]) -> list[ExecutionMetrics]:
        """The records not stored yet: those without an id, and the first of each id that is
        neither stored nor earlier in the batch."""
        ids = [r.record_id for r in records if r.record_id is not None]
        if not ids:
            return list(records)
        seen = {
            row[0]
            for row in self._db.execute(
                "SELECT record_id FROM executions"
                " WHERE record_id IN (SELECT value FROM json_each(?))",
                (json.dumps(ids),),
            )
        }
        fresh = []
        for record in records:
            if record.record_id is None or record.record_id not in seen:
                fresh.append(record)
                seen.add(record.record_id)
        return fresh

    def add(self, records: Sequence[ExecutionMetrics], client_id: str) -> int:
        """Commit a batch; returns how many were stored (a record whose id is stored already
        is not stored again)."""
        rows = [
            (
                r.tool,
                r.resource_id,
                client_id,
                json.dumps(r.command),
                r.start_time,
                r.duration,
                int(r.success),
                r.exit_code,
                r.attempt_number,
                r.execution_number,
                json.dumps(r.labels, sort_keys=True),
                r.record_id,
            )
            for r in records
        ]
        with self._transaction():
            stored = self._db.executemany(
                "INSERT OR IGNORE INTO executions (tool, resource_id, client_id, command,"
                " start_time, duration, success, exit_code, attempt_number, execution_number,"
                " labels, record_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            ).rowcount
        self._since_prune += stored
        if self._since_prune >= _PRUNE_EVERY:
            self.prune(time.time())
        return stored

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """Add rate-limit activity; rows for a minute already stored are summed into it."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (minute, resource_id, tool) DO UPDATE SET"
                " granted = granted + excluded.granted, denied = denied + excluded.denied,"
                " waited = waited + excluded.waited,"
                " wait_total = wait_total + excluded.wait_total",
                rows,
            )

    def prune(self, now: float) -> int:
        """Apply retention: drop records older than `retention` and all but the newest
        `retention_count`. Returns how many records were dropped."""
        self._since_prune = 0
        cutoff = now - self.retention
        with self._transaction():
            dropped = self._db.execute(
                "DELETE FROM executions WHERE start_time < ?", (cutoff,)
            ).rowcount
            dropped += self._db.execute(
                "DELETE FROM executions WHERE id <= (SELECT id FROM executions"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention_count,),
            ).rowcount
            self._db.execute("DELETE FROM usage WHERE minute < ?", (int(cutoff // 60),))
        return dropped

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM executions").fetchone()[0])

    # ---- queries (the seed's MetricsQuery) ---------------------------------------------------

    def resource_summary(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        """The seed's AggregatedMetrics, one row per resource (active_clients filled in by
        the caller, which knows who is connected)."""
        where, args = _filters(resource_id, start, end, tools)
        cursor = self._db.execute(
            "SELECT resource_id, count(*), sum(success), avg(duration), max(start_time)"
            f" FROM executions{where} GROUP BY resource_id ORDER BY resource_id",
            args,
        )
        return [
            {
                "resource_id": rid,
                "total_executions": total,
                "successful_runs": ok,
                "failed_runs": total - ok,
                "average_duration": avg,
                "last_execution": last,
            }
            for rid, total, ok, avg, last in cursor
        ]

    def tool_comparison(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        where, args = _filters(resource_id, start, end, tools)
        cursor = self._db.execute(
            "SELECT tool, count(*), sum(success), avg(duration), min(duration), max(duration),"
            " max(start_time), count(DISTINCT resource_id)"
            f" FROM executions{where} GROUP BY tool ORDER BY tool",
            args,
        )
        return [
            {
                "tool": tool,
                "total_executions": total,
                "successful_runs": ok,
                "failed_runs": total - ok,
                "success_rate": ok / total,
                "average_duration": avg,
                "min_duration": low,
                "max_duration": high,
                "last_execution": last,
                "resources": resources,
            }
            for tool, total, ok, avg, low, high, last, resources in cursor
        ]

    def rate_limit_usage(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        """Tokens granted and requests refused per resource, at one-minute resolution."""
        where, args = _filters(resource_id, start, end, tools, by_minute=True)
        cursor = self._db.execute(
            "SELECT resource_id, sum(granted), sum(denied), sum(waited), sum(wait_total),"
            f" min(minute), max(minute) FROM usage{where}"
            " GROUP BY resource_id ORDER BY resource_id",
            args,
        )
        return [
            {
                "resource_id": rid,
                "tokens_granted": granted,
                "requests_denied": denied,
                "requests_waited": waited,
                "average_wait": wait_total / waited if waited else 0.0,
                "first_minute": first * 60,
                "last_minute": last * 60,
            }
            for rid, granted, denied, waited, wait_total, first, last in cursor
        ]

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        self.db.execute("COMMIT" if kind is None else "ROLLBACK")


def _filters(
    resource_id: str | None,
    start: float | None,
    end: float | None,
    tools: Sequence[str],
    by_minute: bool = False,
) -> tuple[str, list[object]]:
    """A WHERE clause for the query filters; the usage table is keyed by Unix minute."""
    clauses: list[str] = []
    args: list[object] = []
    column = "minute" if by_minute else "start_time"
    if resource_id is not None:
        clauses.append("resource_id = ?")
        args.append(resource_id)
    if start is not None:
        clauses.append(f"{column} >= ?")
        args.append(start // 60 if by_minute else start)
    if end is not None:
        clauses.append(f"{column} <= ?")
        args.append(end // 60 if by_minute else end)
    if tools:
        clauses.append(f"tool IN ({', '.join('?' * len(tools))})")
        args.extend(tools)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args
