"""The metrics store: execution records and their rollups in an embedded SQLite database.

WAL journal: a batch is committed before the daemon acknowledges it, so an acknowledged record
survives the daemon being killed (the commit is in the operating system's hands by then).
Each batch is counted into the minute and hour rollups (daemon/rollups.py) in the same
transaction, and rate-limit usage goes there too, so the `timeseries` query never reads raw
records. Each kind has its own retention: raw records by age and count, minute and hour
rollups by age.

A record's `record_id`, made by the client, is unique here: a client that resends a batch
whose acknowledgement it never received (the daemon died after committing it) has it stored
and counted once. A database made before the column existed gains it when opened, and one
made before the rollups has its records and usage counted into them when opened.

The file is private and replaced when damaged under the daemon: see daemon/soundfile.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from typing import Any

from patience.daemon import rollups
from patience.daemon.histogram import BOUNDS
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.soundfile import GuardedDatabase, Transaction
from patience.daemon.timeseries import GROUP_FIELDS, build_series, make_plan

__all__ = ["DAY", "MetricsStore", "UsageRow"]

DAY = 86400.0
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
"""
_SCHEMA_VERSION = 1  # PRAGMA user_version: 1 once the rollups hold what the database holds
_RUN_FIELDS = (
    "id, tool, resource_id, client_id, command, start_time, duration, success, exit_code,"
    " attempt_number, execution_number, labels"
)
_RUN_NAMES = tuple(name.strip() for name in _RUN_FIELDS.split(","))
_INSERT_EXECUTIONS = (
    "INSERT OR IGNORE INTO executions (tool, resource_id, client_id, command, start_time,"
    " duration, success, exit_code, attempt_number, execution_number, labels, record_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_PRUNE_EVERY = 1000  # records added between count-retention checks
_ELSEWHERE = "set [daemon] storage_path to a directory only you can write"

Row = dict[str, object]

UsageRow = tuple[int, str, str, int, int, int, float]
"""(Unix minute, resource id, tool, tokens granted, requests denied, requests that waited,
their total wait in seconds)"""


class MetricsStore(GuardedDatabase):
    def __init__(
        self,
        path: str,
        retention: float,
        retention_count: int,
        minute_retention: float = 30 * DAY,
        hour_retention: float = 365 * DAY,
    ) -> None:
        self.retention = retention
        self.retention_count = retention_count
        self.minute_retention = minute_retention
        self.hour_retention = hour_retention
        self._since_prune = 0
        super().__init__(path, "metrics database", _ELSEWHERE, _prepare)

    def unseen(self, records: Sequence[ExecutionMetrics]) -> list[ExecutionMetrics]:
        """The records not stored yet: those without an id, and the first of each id that is
        neither stored nor earlier in the batch."""
        return self._sound(lambda db: _unseen(db, records))

    def add(self, records: Sequence[ExecutionMetrics], client_id: str) -> int:
        """Commit a batch and count it into the rollups; returns how many were stored (a
        record whose id is stored already is neither stored nor counted again)."""

        def work(db: sqlite3.Connection) -> int:
            fresh = _unseen(db, records)
            stored = db.executemany(_INSERT_EXECUTIONS, [_row(r, client_id) for r in fresh])
            rollups.add_runs(db, fresh)
            return stored.rowcount

        stored = self._write(work)
        self._since_prune += stored
        if self._since_prune >= _PRUNE_EVERY:
            self.prune(time.time())
        return stored

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """Add rate-limit activity to the rollups; rows for a minute stored already add up."""
        self._write(lambda db: rollups.add_usage(db, rows))

    def prune(self, now: float) -> int:
        """Apply retention at Unix time `now`: drop records older than `retention` and all but
        the newest `retention_count`, minute rollups older than `minute_retention`, hour
        rollups older than `hour_retention`. Returns how many records were dropped."""
        self._since_prune = 0
        cutoff = now - self.retention

        def drop(db: sqlite3.Connection) -> int:
            dropped = db.execute("DELETE FROM executions WHERE start_time < ?", (cutoff,)).rowcount
            dropped += db.execute(
                "DELETE FROM executions WHERE id <= (SELECT id FROM executions"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention_count,),
            ).rowcount
            rollups.prune(db, now - self.minute_retention, now - self.hour_retention)
            return dropped

        return self._write(drop)

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM executions")[0][0])

    # ---- queries (the `query` message) ------------------------------------------------------

    def resource_summary(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        """The `resource_summary` query's answer, one row per resource (active_clients filled in by
        the caller, which knows who is connected)."""
        where, args = _filters(resource_id, start, end, tools)
        rows = self._read(
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
            for rid, total, ok, avg, last in rows
        ]

    def tool_comparison(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        where, args = _filters(resource_id, start, end, tools)
        rows = self._read(
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
            for tool, total, ok, avg, low, high, last, resources in rows
        ]

    def rate_limit_usage(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        """Tokens granted and requests refused per resource, from the minute rollups."""
        where, args = _filters(resource_id, start, end, tools, by_minute=True)
        rows = self._read(
            "SELECT resource_id, sum(tokens_granted), sum(requests_refused),"
            " sum(requests_waited), sum(wait_seconds), min(time), max(time)"
            " FROM minute_rollups JOIN series ON series.id = minute_rollups.series"
            f"{where} {'AND' if where else 'WHERE'} (tokens_granted OR requests_refused"
            " OR requests_waited) GROUP BY resource_id ORDER BY resource_id",
            args,
        )
        return [
            {
                "resource_id": rid,
                "tokens_granted": granted,
                "requests_denied": denied,
                "requests_waited": waited,
                "average_wait": wait_total / waited if waited else 0.0,
                "first_minute": first,
                "last_minute": last,
            }
            for rid, granted, denied, waited, wait_total, first, last in rows
        ]

    # ---- the timeseries and runs queries ------------------------------------------------------

    def timeseries(
        self,
        resource: str | None,
        tool: str | None,
        start: float | None,
        end: float | None,
        step: str | None,
        group_by: str,
        histogram: bool,
        now: float,
    ) -> dict[str, object]:
        """Series of points from the rollups (daemon/timeseries.py): runs, outcomes, exit
        codes, duration percentiles and rate-limit usage per step, one series per group.
        Bad parameters raise QueryError."""
        plan = make_plan(start, end, step, now, now - self.minute_retention)

        def work(db: sqlite3.Connection) -> list[dict[str, object]]:
            series = [sid for sid, _, _ in rollups.find_series(db, resource, tool)]
            rows, exits = rollups.read(db, plan, series, group_by)
            return build_series(plan, GROUP_FIELDS[group_by], rows, exits, histogram)

        reply: dict[str, object] = {
            "start": plan.start,
            "end": plan.end,
            "step": plan.step,
            "group_by": group_by,
            "series": self._sound(work),
        }
        if histogram:
            reply["bucket_bounds"] = list(BOUNDS)
        return reply

    def recent_runs(
        self,
        resource: str | None,
        tool: str | None,
        start: float | None,
        end: float | None,
        after: int | None,
        limit: int,
    ) -> tuple[list[Row], int]:
        """The newest `limit` records (newest first), or with `after` the first `limit` stored
        after record id `after` (oldest first, for following); and the cursor to follow from."""
        return self._sound(lambda db: _recent_runs(db, resource, tool, start, end, after, limit))


def _unseen(db: sqlite3.Connection, records: Sequence[ExecutionMetrics]) -> list[ExecutionMetrics]:
    ids = [r.record_id for r in records if r.record_id is not None]
    if not ids:
        return list(records)
    seen = {
        row[0]
        for row in db.execute(
            "SELECT record_id FROM executions WHERE record_id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),),
        )
    }
    fresh = []
    for record in records:
        if record.record_id is None or record.record_id not in seen:
            fresh.append(record)
            seen.add(record.record_id)
    return fresh


def _row(r: ExecutionMetrics, client_id: str) -> tuple[object, ...]:
    return (
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


def _recent_runs(
    db: sqlite3.Connection,
    resource: str | None,
    tool: str | None,
    start: float | None,
    end: float | None,
    after: int | None,
    limit: int,
) -> tuple[list[Row], int]:
    newest = int(db.execute("SELECT coalesce(max(id), 0) FROM executions").fetchone()[0])
    names: Sequence[str | None] = [None]
    if resource is not None or tool is not None:
        names = sorted({name for _, name, _ in rollups.find_series(db, resource, tool)})
    found: list[tuple[Any, ...]] = []
    for name in names:  # one indexed walk per resource, never a sort of all its records
        found += _runs_of(db, name, tool, start, end, after, limit)
    if after is None:
        found.sort(key=lambda row: (row[5], row[0]), reverse=True)
    else:
        found.sort(key=lambda row: int(row[0]))
    found = found[:limit]
    cursor = newest if after is None or len(found) < limit else int(found[-1][0])
    return [_run(row) for row in found], cursor


def _runs_of(
    db: sqlite3.Connection,
    resource_id: str | None,
    tool: str | None,
    start: float | None,
    end: float | None,
    after: int | None,
    limit: int,
) -> list[tuple[Any, ...]]:
    """One resource's runs (every resource's with None), newest first along the (resource,
    start) or (start) index, or after a record id along the rowid: the `+` keeps SQLite off
    the other indexes, so following reads only the records stored since."""
    plus = "" if after is None else "+"
    clauses, args = [], []
    for sql, value in (
        (f"{plus}resource_id = ?", resource_id),
        ("+tool = ?", tool),
        (f"{plus}start_time >= ?", start),
        (f"{plus}start_time < ?", end),
        ("id > ?", after),
    ):
        if value is not None:
            clauses.append(sql)
            args.append(value)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "start_time DESC, id DESC" if after is None else "id"
    return db.execute(
        f"SELECT {_RUN_FIELDS} FROM executions{where} ORDER BY {order} LIMIT ?", (*args, limit)
    ).fetchall()


def _run(row: tuple[Any, ...]) -> Row:
    run = dict(zip(_RUN_NAMES, row, strict=True))
    run["command"] = json.loads(str(run["command"]))
    run["labels"] = json.loads(str(run["labels"]))
    run["success"] = bool(run["success"])
    return run


def _prepare(db: sqlite3.Connection) -> None:
    """WAL journal and the current schema (adding what a database from an older version lacks)."""
    db.execute("PRAGMA journal_mode=WAL")  # its -wal and -shm files copy the database's mode
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA + rollups.SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
    if "record_id" not in columns:  # a database from before record ids
        db.execute("ALTER TABLE executions ADD COLUMN record_id TEXT")
    db.execute(  # several NULLs (records without an id) are allowed
        "CREATE UNIQUE INDEX IF NOT EXISTS executions_record ON executions (record_id)"
    )
    if db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA_VERSION:
        with Transaction(db):
            _count_into_rollups(db)
            db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")


def _count_into_rollups(db: sqlite3.Connection) -> None:
    """A database from before the rollups: its usage table and its records go into them."""
    if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'usage'").fetchone():
        rollups.add_usage(db, db.execute("SELECT * FROM usage").fetchall())
        db.execute("DROP TABLE usage")
    records = db.execute(
        "SELECT tool, resource_id, start_time, duration, success, exit_code FROM executions"
    )
    while batch := records.fetchmany(10_000):
        rollups.add_runs(
            db,
            [
                ExecutionMetrics(tool, rid, start, duration, bool(ok), code)
                for tool, rid, start, duration, ok, code in batch
            ],
        )


def _filters(
    resource_id: str | None,
    start: float | None,
    end: float | None,
    tools: Sequence[str],
    by_minute: bool = False,
) -> tuple[str, list[object]]:
    """A WHERE clause for the query filters; rollups are keyed by the minute's start."""
    clauses: list[str] = []
    args: list[object] = []
    column = "time" if by_minute else "start_time"
    if resource_id is not None:
        clauses.append("resource_id = ?")
        args.append(resource_id)
    if start is not None:
        clauses.append(f"{column} >= ?")
        args.append(start // 60 * 60 if by_minute else start)
    if end is not None:
        clauses.append(f"{column} <= ?")
        args.append(end // 60 * 60 if by_minute else end)
    if tools:
        clauses.append(f"tool IN ({', '.join('?' * len(tools))})")
        args.extend(tools)
    return (f" WHERE {' AND '.join(clauses)}" if clauses else ""), args
