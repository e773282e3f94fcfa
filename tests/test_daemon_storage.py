"""The SQLite metrics store: what goes in comes back from the three queries, filtered by
resource, time range and tool; retention by age and by count; private files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.storage import MetricsStore

DAY = 86400.0


def rec(
    tool: str, resource: str, start: float, duration: float = 1.0, ok: bool = True
) -> ExecutionMetrics:
    return ExecutionMetrics(
        tool=tool,  # type: ignore[arg-type]
        resource_id=resource,
        start_time=start,
        duration=duration,
        success=ok,
        exit_code=0 if ok else 1,
        command=["echo", "hi"],
        labels={"k": "v"},
    )


@pytest.fixture
def store(tmp_path: Path) -> MetricsStore:
    return MetricsStore(str(tmp_path / "m.db"), retention=30 * DAY, retention_count=1_000_000)


def test_summary_by_resource_with_filters(store: MetricsStore) -> None:
    store.add(
        [
            rec("repeater", "a", 100, 1.0, True),
            rec("repeater", "a", 200, 3.0, False),
            rec("patience", "a", 300, 2.0, True),
            rec("patience", "b", 400, 4.0, True),
        ],
        "c1",
    )
    rows = store.resource_summary(None, None, None, [])
    assert rows == [
        {
            "resource_id": "a",
            "total_executions": 3,
            "successful_runs": 2,
            "failed_runs": 1,
            "average_duration": 2.0,
            "last_execution": 300.0,
        },
        {
            "resource_id": "b",
            "total_executions": 1,
            "successful_runs": 1,
            "failed_runs": 0,
            "average_duration": 4.0,
            "last_execution": 400.0,
        },
    ]
    assert [r["total_executions"] for r in store.resource_summary("a", 150, 300, [])] == [2]
    assert [
        r["total_executions"] for r in store.resource_summary("a", None, None, ["patience"])
    ] == [1]
    assert store.resource_summary("zzz", None, None, []) == []


def test_tool_comparison(store: MetricsStore) -> None:
    store.add([rec("repeater", "a", t, 1.0, t % 2 == 0) for t in range(10)], "c1")
    store.add([rec("patience", "a", t, 3.0, True) for t in range(4)], "c2")
    rows = {r["tool"]: r for r in store.tool_comparison("a", None, None, [])}
    assert rows["repeater"]["total_executions"] == 10
    assert rows["repeater"]["success_rate"] == 0.5
    assert rows["patience"]["average_duration"] == 3.0
    assert rows["patience"]["max_duration"] == 3.0
    assert list(rows) == ["patience", "repeater"]


def test_rate_limit_usage_accumulates_per_minute(store: MetricsStore) -> None:
    store.add_usage([(10, "a", "repeater", 5, 2, 2, 1.0), (11, "a", "patience", 5, 2, 2, 1.0)])
    store.add_usage([(10, "a", "repeater", 5, 2, 2, 1.0)])
    [row] = store.rate_limit_usage("a", None, None, [])
    assert (row["tokens_granted"], row["requests_denied"], row["requests_waited"]) == (15, 6, 6)
    assert row["average_wait"] == 0.5
    assert (row["first_minute"], row["last_minute"]) == (600, 660)
    [row] = store.rate_limit_usage("a", 600, 659, ["repeater"])
    assert row["tokens_granted"] == 10


def test_retention_by_age(store: MetricsStore) -> None:
    now = 100 * DAY
    store.add([rec("repeater", "a", now - 40 * DAY), rec("repeater", "a", now - DAY)], "c")
    assert store.prune(now) == 1
    assert store.count() == 1


def test_retention_by_count_keeps_the_newest(tmp_path: Path) -> None:
    store = MetricsStore(str(tmp_path / "m.db"), retention=1e12, retention_count=10)
    store.add([rec("repeater", "a", float(t)) for t in range(25)], "c")
    assert store.prune(0.0) == 15
    [row] = store.resource_summary("a", None, None, [])
    assert row["total_executions"] == 10 and row["last_execution"] == 24.0


def test_retention_applies_as_records_arrive(tmp_path: Path) -> None:
    store = MetricsStore(str(tmp_path / "m.db"), retention=1e12, retention_count=100)
    for batch in range(3):
        store.add([rec("repeater", "a", float(batch * 1000 + t)) for t in range(600)], "c")
    assert store.count() <= 700


def test_records_survive_reopening_and_files_are_private(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MetricsStore(str(path), retention=30 * DAY, retention_count=1000)
    store.add([rec("repeater", "a", 5.0)], "c")
    for suffix in ("", "-wal", "-shm"):
        candidate = Path(str(path) + suffix)
        if candidate.exists():
            assert stat.S_IMODE(os.stat(candidate).st_mode) == 0o600, suffix
    store.close()
    again = MetricsStore(str(path), retention=30 * DAY, retention_count=1000)
    assert again.count() == 1
