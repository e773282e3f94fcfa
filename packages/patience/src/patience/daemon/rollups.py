"""The rollup tables of the metrics store: per resource and tool, per minute and per hour, the
runs, successes, exit codes, duration histogram and rate-limit usage, written as records and
usage arrive so that the `timeseries` query reads a few rows per point, never the raw records.

A (resource, tool) pair is a row of `series`; each tier has a table of summed columns keyed by
(series, time) and a table of exit-code counts keyed by (series, time, exit code). Writing is an
upsert that adds to what the row holds, so late or resent data sums in. Exit codes outside
-255..255 are counted as OTHER_EXIT, so a client cannot make rows without end.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence

from patience.daemon.histogram import BUCKETS, bucket_of
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.timeseries import (
    COUNTERS,
    GROUP_FIELDS,
    HOUR,
    MAX_SERIES,
    MINUTE,
    Plan,
    QueryError,
    Row,
)

__all__ = [
    "MAX_ROWS_READ",
    "OTHER_EXIT",
    "SCHEMA",
    "TIERS",
    "add_runs",
    "add_usage",
    "find_series",
    "prune",
    "read",
]

TIERS = {MINUTE: "minute", HOUR: "hour"}
OTHER_EXIT = 256  # where exit codes outside -255..255 are counted
MAX_ROWS_READ = 2_000_000  # rollup rows one query may read (matched series x rows each)
_BUCKET_COLUMNS = tuple(f"h{k:02d}" for k in range(BUCKETS))
_SUMMED = (*_BUCKET_COLUMNS, *COUNTERS)


def _tier_schema(tier: str) -> str:
    columns = ",\n".join(
        f"    {name} {'REAL' if name in ('duration_sum', 'wait_seconds') else 'INTEGER'}"
        " NOT NULL DEFAULT 0"
        for name in _SUMMED
    )
    return f"""
CREATE TABLE IF NOT EXISTS {tier}_rollups (
    series INTEGER NOT NULL,
    time INTEGER NOT NULL,
    last_run REAL,
{columns},
    PRIMARY KEY (series, time)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {tier}_rollups_time ON {tier}_rollups (time);
CREATE TABLE IF NOT EXISTS {tier}_exit_codes (
    series INTEGER NOT NULL,
    time INTEGER NOT NULL,
    exit_code INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (series, time, exit_code)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS {tier}_exit_codes_time ON {tier}_exit_codes (time);
"""


SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    resource_id TEXT NOT NULL,
    tool TEXT NOT NULL,
    UNIQUE (resource_id, tool)
);
""" + "".join(_tier_schema(tier) for tier in TIERS.values())


def _upsert(tier: str) -> str:
    names = ", ".join(_SUMMED)
    marks = ", ".join("?" * len(_SUMMED))
    sums = ", ".join(f"{name} = {name} + excluded.{name}" for name in _SUMMED)
    return (
        f"INSERT INTO {tier}_rollups (series, time, last_run, {names}) VALUES (?, ?, ?, {marks})"
        f" ON CONFLICT (series, time) DO UPDATE SET {sums}, last_run = CASE"
        " WHEN last_run IS NULL OR excluded.last_run > last_run THEN excluded.last_run"
        " ELSE last_run END"
    )


_UPSERT = {tier: _upsert(tier) for tier in TIERS.values()}
_ADD_EXITS = {
    tier: f"INSERT INTO {tier}_exit_codes VALUES (?, ?, ?, ?) ON CONFLICT"
    " (series, time, exit_code) DO UPDATE SET count = count + excluded.count"
    for tier in TIERS.values()
}

Cell = tuple[int, int]  # (series id, time)


class _Sums:
    """The summed columns of one rollup row being built, its latest run and its exit codes."""

    __slots__ = ("exits", "last_run", "values")

    def __init__(self) -> None:
        self.values = [0.0] * len(_SUMMED)
        self.last_run: float | None = None
        self.exits: dict[int, int] = {}


_RUNS, _SUCCESSES, _DURATION = (BUCKETS + COUNTERS.index(n) for n in COUNTERS[:3])


def _series_id(db: sqlite3.Connection, resource_id: str, tool: str) -> int:
    db.execute(
        "INSERT OR IGNORE INTO series (resource_id, tool) VALUES (?, ?)", (resource_id, tool)
    )
    row = db.execute(
        "SELECT id FROM series WHERE resource_id = ? AND tool = ?", (resource_id, tool)
    ).fetchone()
    return int(row[0])


def add_runs(db: sqlite3.Connection, records: Iterable[ExecutionMetrics]) -> None:
    """Count records into both tiers (inside the caller's transaction)."""
    ids: dict[tuple[str, str], int] = {}
    tiers: dict[int, dict[Cell, _Sums]] = {resolution: {} for resolution in TIERS}
    for record in records:
        key = (record.resource_id, record.tool)
        series = ids.get(key)
        if series is None:
            series = ids[key] = _series_id(db, *key)
        code = record.exit_code if -255 <= record.exit_code <= 255 else OTHER_EXIT
        bucket = bucket_of(record.duration)
        for resolution, cells in tiers.items():
            time = int(record.start_time // resolution) * resolution
            sums = cells.get((series, time))
            if sums is None:
                sums = cells[(series, time)] = _Sums()
            values = sums.values
            values[bucket] += 1
            values[_RUNS] += 1
            values[_SUCCESSES] += record.success
            values[_DURATION] += record.duration
            if sums.last_run is None or record.start_time > sums.last_run:
                sums.last_run = record.start_time
            sums.exits[code] = sums.exits.get(code, 0) + 1
    _write(db, tiers)


def add_usage(
    db: sqlite3.Connection, rows: Iterable[tuple[int, str, str, int, int, int, float]]
) -> None:
    """Count rate-limit activity, rows of (Unix minute, resource id, tool, tokens granted,
    requests refused, requests that waited, their total wait), into both tiers."""
    tiers: dict[int, dict[Cell, _Sums]] = {resolution: {} for resolution in TIERS}
    first = BUCKETS + COUNTERS.index("tokens_granted")
    for minute, resource_id, tool, granted, refused, waited, wait in rows:
        series = _series_id(db, resource_id, tool)
        for resolution, cells in tiers.items():
            time = minute * 60 // resolution * resolution
            sums = cells.setdefault((series, time), _Sums())
            for offset, value in enumerate((granted, refused, waited, wait)):
                sums.values[first + offset] += value
    _write(db, tiers)


def _write(db: sqlite3.Connection, tiers: dict[int, dict[Cell, _Sums]]) -> None:
    for resolution, cells in tiers.items():
        tier = TIERS[resolution]
        db.executemany(
            _UPSERT[tier],
            [(series, time, sums.last_run, *sums.values) for (series, time), sums in cells.items()],
        )
        db.executemany(
            _ADD_EXITS[tier],
            [
                (series, time, code, count)
                for (series, time), sums in cells.items()
                for code, count in sums.exits.items()
            ],
        )


def find_series(
    db: sqlite3.Connection, resource_glob: str | None, tool: str | None
) -> list[tuple[int, str, str]]:
    """(id, resource id, tool) of the series matching the filters (a GLOB pattern, as the
    shell's: `*`, `?`, `[...]`, case-sensitive), at most MAX_SERIES, else QueryError."""
    rows = db.execute(
        "SELECT id, resource_id, tool FROM series WHERE (?1 IS NULL OR resource_id GLOB ?1)"
        " AND (?2 IS NULL OR tool = ?2) ORDER BY resource_id, tool LIMIT ?3",
        (resource_glob, tool, MAX_SERIES + 1),
    ).fetchall()
    if len(rows) > MAX_SERIES:
        raise QueryError(
            f"the filters match more than {MAX_SERIES} resource and tool pairs:"
            " narrow the resource pattern or name a tool"
        )
    return [(int(i), str(r), str(t)) for i, r, t in rows]


def read(
    db: sqlite3.Connection, plan: Plan, series: Sequence[int], group_by: str
) -> tuple[list[Row], list[tuple[tuple[str, ...], int, int, int]]]:
    """The rollup rows of `series` in the plan's range, summed per group and point, and the
    exit-code counts likewise."""
    per_series = (plan.end - plan.start) // plan.resolution
    if len(series) * per_series > MAX_ROWS_READ:
        raise QueryError(
            f"the query would read up to {len(series) * per_series} rollup rows ({len(series)}"
            f" series x {per_series}), more than {MAX_ROWS_READ}: narrow the resource pattern,"
            " name a tool, or ask for a shorter range"
        )
    tier = TIERS[plan.resolution]
    keys = tuple(f"s.{field}" for field in GROUP_FIELDS[group_by])
    width = len(keys)
    group = ", ".join((*keys, "i"))
    select = ", ".join((*keys, "(r.time - ?1) / ?2 AS i"))
    where = "r.series IN (SELECT value FROM json_each(?3)) AND r.time >= ?1 AND r.time < ?4"
    args = (plan.start, plan.step, json.dumps(list(series)), plan.end)
    sums = ", ".join(f"sum(r.{name})" for name in _SUMMED)
    rows = [
        Row(tuple(row[:width]), int(row[width]), row[width + 1 : -1], row[-1])
        for row in db.execute(
            f"SELECT {select}, {sums}, max(r.last_run) FROM {tier}_rollups r"
            f" JOIN series s ON s.id = r.series WHERE {where} GROUP BY {group}",
            args,
        )
    ]
    exits = [
        (tuple(row[:width]), int(row[width]), int(row[width + 1]), int(row[width + 2]))
        for row in db.execute(
            f"SELECT {select}, r.exit_code, sum(r.count) FROM {tier}_exit_codes r"
            f" JOIN series s ON s.id = r.series WHERE {where} GROUP BY {group}, r.exit_code",
            args,
        )
    ]
    return rows, exits


def prune(db: sqlite3.Connection, minute_cutoff: float, hour_cutoff: float) -> None:
    """Drop minute rows older than `minute_cutoff`, hour rows older than `hour_cutoff` (Unix
    seconds), and the series left with no rows (inside the caller's transaction)."""
    for tier, cutoff in (("minute", minute_cutoff), ("hour", hour_cutoff)):
        for table in (f"{tier}_rollups", f"{tier}_exit_codes"):
            db.execute(f"DELETE FROM {table} WHERE time < ?", (int(cutoff),))
    db.execute(
        "DELETE FROM series WHERE NOT EXISTS (SELECT 1 FROM hour_rollups WHERE series = series.id)"
        " AND NOT EXISTS (SELECT 1 FROM minute_rollups WHERE series = series.id)"
    )
