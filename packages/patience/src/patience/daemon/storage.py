"""The metrics store: execution records and rate-limit usage in an embedded SQLite database.

WAL journal: a batch is committed before the daemon acknowledges it, so an acknowledged record
survives the daemon being killed (the commit is in the operating system's hands by then).
Retention keeps the database bounded by age and by record count.

A record's `record_id`, made by the client, is unique here: a client that resends a batch
whose acknowledgement it never received (the daemon died after committing it) has it stored
once. A database made before the column existed gains it when opened.

The database may sit in a directory others share (beside a socket in /tmp): it, its -wal and
its -shm are made by us (paths.open_private_file) before SQLite opens them, so no name another
user placed there is adopted. A database file truncated, overwritten, replaced or removed under
the running daemon is noticed before and after every write (a few system calls: the header and
size of the file we opened, and that the path still names it) or when SQLite calls it corrupt:
it is moved aside as `<name>.corrupt-<time>`, a fresh database takes its place, the log says so,
and the batch is written to the fresh one, so what is acknowledged is stored.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from patience.daemon import paths
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
_INSERT_EXECUTIONS = (
    "INSERT OR IGNORE INTO executions (tool, resource_id, client_id, command, start_time,"
    " duration, success, exit_code, attempt_number, execution_number, labels, record_id)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_ADD_USAGE = (
    "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (minute, resource_id, tool) DO UPDATE SET"
    " granted = granted + excluded.granted, denied = denied + excluded.denied,"
    " waited = waited + excluded.waited, wait_total = wait_total + excluded.wait_total"
)
_PRUNE_EVERY = 1000  # records added between count-retention checks
_WHAT = "metrics database"
_ELSEWHERE = "set [daemon] storage_path to a directory only you can write"
_MAGIC = b"SQLite format 3\0"

log = logging.getLogger("patience.daemon")

Row = dict[str, object]
T = TypeVar("T")


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
        self.uid = os.geteuid()
        self._since_prune = 0
        self._fd = -1  # our own handle on the database file, to notice it being damaged
        self._open()

    def _open(self) -> None:
        """Open or create the database. Its -wal and -shm are made (private) before SQLite
        opens them, so SQLite never adopts a name someone else placed first; a -journal, which
        SQLite makes and removes by itself, must be ours when there is one."""
        fd = paths.open_private_file(self.path, self.uid, _WHAT, True, _ELSEWHERE)
        db = None
        try:
            for suffix in ("-wal", "-shm"):
                os.close(
                    paths.open_private_file(self.path + suffix, self.uid, _WHAT, True, _ELSEWHERE)
                )
            paths.check_existing_file(self.path + "-journal", self.uid, _WHAT, True, _ELSEWHERE)
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            _prepare(db)
        except BaseException:
            if db is not None:
                db.close()
            os.close(fd)
            raise
        self._db, self._fd = db, fd

    def close(self) -> None:
        if self._fd < 0:
            return
        self._db.close()
        os.close(self._fd)  # after SQLite's: closing it first would drop SQLite's locks
        self._fd = -1

    def unseen(self, records: Sequence[ExecutionMetrics]) -> list[ExecutionMetrics]:
        """The records not stored yet: those without an id, and the first of each id that is
        neither stored nor earlier in the batch."""
        ids = [r.record_id for r in records if r.record_id is not None]
        if not ids:
            return list(records)
        seen = {
            row[0]
            for row in self._read(
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
        stored = self._write(lambda db: db.executemany(_INSERT_EXECUTIONS, rows).rowcount)
        self._since_prune += stored
        if self._since_prune >= _PRUNE_EVERY:
            self.prune(time.time())
        return stored

    def add_usage(self, rows: Sequence[UsageRow]) -> None:
        """Add rate-limit activity; rows for a minute already stored are summed into it."""
        self._write(lambda db: db.executemany(_ADD_USAGE, rows).rowcount)

    def prune(self, now: float) -> int:
        """Apply retention: drop records older than `retention` and all but the newest
        `retention_count`. Returns how many records were dropped."""
        self._since_prune = 0
        cutoff = now - self.retention

        def drop(db: sqlite3.Connection) -> int:
            dropped = db.execute("DELETE FROM executions WHERE start_time < ?", (cutoff,)).rowcount
            dropped += db.execute(
                "DELETE FROM executions WHERE id <= (SELECT id FROM executions"
                " ORDER BY id DESC LIMIT 1 OFFSET ?)",
                (self.retention_count,),
            ).rowcount
            db.execute("DELETE FROM usage WHERE minute < ?", (int(cutoff // 60),))
            return dropped

        return self._write(drop)

    def count(self) -> int:
        return int(self._read("SELECT count(*) FROM executions")[0][0])

    # ---- queries (the seed's MetricsQuery) ---------------------------------------------------

    def resource_summary(
        self, resource_id: str | None, start: float | None, end: float | None, tools: Sequence[str]
    ) -> list[Row]:
        """The seed's AggregatedMetrics, one row per resource (active_clients filled in by
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
        """Tokens granted and requests refused per resource, at one-minute resolution."""
        where, args = _filters(resource_id, start, end, tools, by_minute=True)
        rows = self._read(
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
            for rid, granted, denied, waited, wait_total, first, last in rows
        ]

    # ---- a sound file -----------------------------------------------------------------------

    def _write(self, work: Callable[[sqlite3.Connection], int]) -> int:
        """Run `work` in one transaction in a sound file (see _sound)."""

        def transaction(db: sqlite3.Connection) -> int:
            with _Transaction(db):
                return work(db)

        return self._sound(transaction)

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows of a query, read from a sound file (see _sound)."""
        return self._sound(lambda db: db.execute(sql, args).fetchall())

    def _sound(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on a sound file. A file found damaged before, during (SQLite calls it
        corrupt) or after it is replaced by a fresh database and the work done again there:
        its result is true of a file that is sound. Damaged twice in a row, the work is
        reported as not done."""
        for _ in range(2):
            db = self._checked()
            try:
                result = work(db)
                damage = self._damage()
            except sqlite3.DatabaseError as exc:
                if exc.sqlite_errorcode & 0xFF not in (
                    sqlite3.SQLITE_CORRUPT,
                    sqlite3.SQLITE_NOTADB,
                ):
                    raise
                damage = f"SQLite calls it damaged: {exc}"
            if damage is None:
                return result
            self._start_afresh(damage)
        raise sqlite3.DatabaseError(
            f"the metrics database {self.path} was damaged again while being used"
        )

    def _checked(self) -> sqlite3.Connection:
        """The connection to a database file that is still sound (else to a fresh one)."""
        if self._fd < 0:  # an earlier fresh start failed: try again
            self._open()
        damage = self._damage()
        if damage is not None:
            self._start_afresh(damage)
        return self._db

    def _damage(self) -> str | None:
        """What happened to the database file under us, or None while it is sound as far as
        its header and size tell: the SQLite header is there, the file holds every page the
        header counts, and the path still names the file we opened."""
        try:
            named = os.lstat(self.path)
        except FileNotFoundError:
            return "it was removed"
        ours = os.fstat(self._fd)
        if (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino):
            return "another file was put in its place"
        header = os.pread(self._fd, 100, 0)
        if len(header) < 100:
            return f"it was truncated to {ours.st_size} bytes"
        if not header.startswith(_MAGIC):
            return "it was overwritten: its SQLite header is gone"
        page_size = int.from_bytes(header[16:18])
        page_size = 65536 if page_size == 1 else page_size  # how the format writes 65536
        pages = int.from_bytes(header[28:32])
        counted = header[24:28] == header[92:96]  # the page count is valid
        if counted and ours.st_size < pages * page_size:
            return f"it was truncated to {ours.st_size} bytes (its header counts {pages} pages)"
        return None

    def _start_afresh(self, damage: str) -> None:
        """Move the damaged database aside (when the path still names a file of ours), with
        any -wal and -shm left beside it, and open a fresh one; say so loudly."""
        self.close()
        aside = _free_name(f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        moved = [suffix for suffix in ("", "-wal", "-shm") if self._move_own(suffix, aside)]
        log.error(
            "metrics database %s was damaged under the daemon (%s): %s, started a fresh one"
            " (records stored before are no longer served)",
            self.path,
            damage,
            f"moved it to {aside}" if "" in moved else "nothing to move aside",
        )
        self._open()

    def _move_own(self, suffix: str, aside: str) -> bool:
        """Rename our file `path + suffix` to `aside + suffix`; leave anyone else's."""
        try:
            if os.lstat(self.path + suffix).st_uid != self.uid:
                return False
        except FileNotFoundError:
            return False
        os.rename(self.path + suffix, aside + suffix)
        return True


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite may have rolled back by itself
            self.db.execute("ROLLBACK")


def _prepare(db: sqlite3.Connection) -> None:
    """WAL journal and the current schema (adding what a database from an older version lacks)."""
    db.execute("PRAGMA journal_mode=WAL")  # its -wal and -shm files copy the database's mode
    db.execute("PRAGMA synchronous=NORMAL")
    db.executescript(_SCHEMA)
    columns = {row[1] for row in db.execute("PRAGMA table_info(executions)")}
    if "record_id" not in columns:  # a database from before record ids
        db.execute("ALTER TABLE executions ADD COLUMN record_id TEXT")
    db.execute(  # several NULLs (records without an id) are allowed
        "CREATE UNIQUE INDEX IF NOT EXISTS executions_record ON executions (record_id)"
    )


def _free_name(name: str) -> str:
    """`name`, or `name-2`, `name-3`... whichever is not taken."""
    candidate, number = name, 1
    while any(os.path.lexists(candidate + suffix) for suffix in ("", "-wal", "-shm")):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


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
