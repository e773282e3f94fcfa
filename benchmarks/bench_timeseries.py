"""The `timeseries` query with 10 million runs in the store: 24 h at 5-minute steps for one
resource, asked of a real patience-daemon over its socket.

The store is generated directly in SQLite (a real daemon would take hours to be sent that
many records): for 30 days, 10 resources x 2 tools with 6 runs a minute each on average and one
busy resource with ten times as many, in the minute and hour rollups (10.4 million runs, their
exit codes and durations), and the raw records of the last 7 days (2.4 million rows, the
default raw retention). The query reads 288 points x 2 tools x 5 minute rows, for the quiet
resource and for the busy one alike: its cost depends on those, not on the runs behind them.

Reference: the same 24 h of that resource grouped into 5-minute counts straight from the raw
records (one SQL GROUP BY, no percentiles, no exit codes, no socket): what answering from the
records would cost at the very least; it grows with the runs.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from common import Row, ms, tool
from patience.daemon.client import DaemonClient
from patience.daemon.histogram import bucket_of
from patience.daemon.storage import MetricsStore

RESOURCES, TOOLS, DAYS, RAW_DAYS = 10, ("repeater", "patience"), 30, 7
ROUNDS = 30
TARGET = 0.050  # seconds
QUIET, BUSY = "api:bench:res-03", "api:bench:busy"


def generate(path: str, now: int) -> int:
    """Fill a fresh store (schema made by MetricsStore itself); returns the runs it holds."""
    MetricsStore(path, RAW_DAYS * 86400.0, 10**8).close()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA synchronous=OFF")
    db.execute("BEGIN")
    db.executemany(
        "INSERT INTO series (resource_id, tool) VALUES (?, ?)",
        [(f"api:bench:res-{r:02d}", t) for r in range(RESOURCES) for t in TOOLS]
        + [(BUSY, t) for t in TOOLS],
    )
    fast, slow = f"h{bucket_of(0.05):02d}", f"h{bucket_of(0.4):02d}"
    db.execute(
        f"""WITH RECURSIVE m(t) AS (SELECT {now - DAYS * 86400}
            UNION ALL SELECT t + 60 FROM m WHERE t + 60 < {now}),
        c AS (SELECT s.id AS sid, m.t AS t, (3 + (m.t / 60 + s.id) % 7)
                  * CASE s.resource_id WHEN '{BUSY}' THEN 10 ELSE 1 END AS n
              FROM m CROSS JOIN series s)
        INSERT INTO minute_rollups (series, time, last_run, {fast}, {slow}, runs, successes,
            duration_sum, tokens_granted, requests_refused, requests_waited, wait_seconds)
        SELECT sid, t, t + 59, n - n / 6, n / 6, n, n - n / 10,
            (n - n / 6) * 0.05 + (n / 6) * 0.4, n, n / 20, n / 8, (n / 8) * 0.2 FROM c"""
    )
    db.execute(
        "INSERT INTO minute_exit_codes SELECT series, time, 0, successes FROM minute_rollups"
    )
    db.execute(
        "INSERT INTO minute_exit_codes SELECT series, time, 1, runs - successes"
        " FROM minute_rollups WHERE runs > successes"
    )
    summed = [row[1] for row in db.execute("PRAGMA table_info(minute_rollups)")][3:]
    db.execute(
        "INSERT INTO hour_rollups SELECT series, time / 3600 * 3600 AS h, max(last_run),"
        f" {', '.join(f'sum({c})' for c in summed)} FROM minute_rollups GROUP BY series, h"
    )
    db.execute(
        "INSERT INTO hour_exit_codes SELECT series, time / 3600 * 3600 AS h, exit_code,"
        " sum(count) FROM minute_exit_codes GROUP BY series, h, exit_code"
    )
    total = int(db.execute("SELECT sum(runs) FROM minute_rollups").fetchone()[0])
    raw = total * RAW_DAYS // DAYS
    db.execute(
        f"""WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < {raw})
        INSERT INTO executions (tool, resource_id, client_id, command, start_time, duration,
            success, exit_code, attempt_number, execution_number, labels)
        SELECT CASE i / 20 % 2 WHEN 0 THEN 'repeater' ELSE 'patience' END,
            CASE i % 2 WHEN 0 THEN '{BUSY}'
                 ELSE 'api:bench:res-' || printf('%02d', i / 2 % {RESOURCES}) END, 'bench',
            '["curl","-f","https://api.example.com/health"]',
            {now - RAW_DAYS * 86400} + i * {RAW_DAYS * 86400 / raw}, 0.05, i % 10 != 0,
            CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END, 0, i, '{{}}' FROM k"""
    )
    db.execute("COMMIT")
    db.close()
    return total


def from_records(path: str, now: float, resource: str) -> float:
    """Seconds for the reference: 5-minute counts of the resource's last day from raw rows."""
    db = sqlite3.connect(path)
    times = []
    for _ in range(5):
        started = time.perf_counter()
        db.execute(
            "SELECT CAST((start_time - ?1) / 300 AS INTEGER) AS i, count(*), sum(success),"
            " avg(duration) FROM executions WHERE resource_id = ?2 AND start_time >= ?1"
            " AND start_time < ?3 GROUP BY i",
            (now - 86400, resource, now),
        ).fetchall()
        times.append(time.perf_counter() - started)
    db.close()
    return statistics.median(times)


def through_daemon(directory: Path, db: str, now: float) -> dict[str, float]:
    """Median seconds of the query for each resource, asked of a real daemon on this store."""
    socket = str(directory / "d.sock")
    config = directory / "config.toml"
    config.write_text(f'[daemon]\nstorage_path = "{db}"\n')
    with open(directory / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            [tool("patience-daemon"), "--socket", socket, "--config", str(config)],
            stdout=log,
            stderr=log,
        )
    try:
        client = DaemonClient(socket, "repeater", timeout=30.0)
        deadline = time.monotonic() + 60
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or daemon.poll() is not None:
                    raise
                time.sleep(0.1)
        medians = {}
        for resource in (QUIET, BUSY):
            message: dict[str, object] = {
                "type": "timeseries", "resource": resource, "start": now - 86400, "end": now,
                "step": "5m",
            }  # fmt: skip
            reply = client.request(message)  # warm: the pages read once
            series = reply["series"]
            assert isinstance(series, list) and len(series[0]["points"]) == 288, reply
            times = []
            for _ in range(ROUNDS):
                started = time.perf_counter()
                client.request(message)
                times.append(time.perf_counter() - started)
            medians[resource] = statistics.median(times)
        client.close()
        return medians
    finally:
        daemon.terminate()
        daemon.wait(30)


def run() -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="pd-bench-", dir="/tmp"))
    try:
        now = int(time.time()) // 300 * 300  # whole steps: 288 points
        db = str(directory / "metrics.db")
        runs = generate(db, now)
        ours = through_daemon(directory, db, now)
        rows = []
        for resource, label in ((QUIET, "a quiet resource"), (BUSY, "a busy one (10x)")):
            reference = from_records(db, now, resource)
            name = f"timeseries 24h/5m, {label}, {runs / 1e6:.1f}M runs stored"
            took = ours[resource]
            rows.append(
                Row(name, ms(took), ms(reference), took / reference, "≤ 50 ms", took <= TARGET)
            )
        return rows
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    from common import print_table

    print_table(run())
