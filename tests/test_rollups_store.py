"""The rollups in the real SQLite store: what records and usage add up to, per resource and
tool and step, matches the records themselves; resent records count once; each tier's
retention with an injected clock; the recent-runs read and its cursor; a database from before
the rollups is counted into them when opened; the query's bounds."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from patience.daemon import rollups
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.storage import DAY, MetricsStore
from patience.daemon.timeseries import QueryError

NOW = 1_800_000_000.0


def rec(
    resource: str,
    start: float,
    duration: float = 0.1,
    ok: bool = True,
    tool: str = "repeater",
    code: int | None = None,
    record_id: str | None = None,
) -> ExecutionMetrics:
    return ExecutionMetrics(
        tool=tool,  # type: ignore[arg-type]
        resource_id=resource,
        start_time=start,
        duration=duration,
        success=ok,
        exit_code=(0 if ok else 1) if code is None else code,
        command=["job", resource],
        record_id=record_id,
    )


@pytest.fixture
def store(tmp_path: Path) -> MetricsStore:
    return MetricsStore(str(tmp_path / "m.db"), retention=7 * DAY, retention_count=1_000_000)


def series(store: MetricsStore, group_by: str = "resource", **kw: object) -> list[dict]:
    args: dict = {
        "resource": None, "tool": None, "start": NOW - 3600, "end": NOW, "step": None,
        "group_by": group_by, "histogram": False,
    }  # fmt: skip
    args.update(kw)
    reply = store.timeseries(now=NOW, **args)
    return reply["series"]  # type: ignore[return-value]


def test_totals_per_resource_tool_and_overall(store: MetricsStore) -> None:
    store.add(
        [
            rec("api:a", NOW - 100, 0.2, True),
            rec("api:a", NOW - 90, 0.4, False, code=7),
            rec("api:a", NOW - 80, 0.3, True, tool="patience"),
            rec("db:b", NOW - 70, 2.0, True),
        ],
        "c",
    )
    by_resource = {s["resource_id"]: s["total"] for s in series(store)}
    assert by_resource["api:a"]["runs"] == 3 and by_resource["api:a"]["failures"] == 1
    assert by_resource["api:a"]["exit_codes"] == {"0": 2, "7": 1}
    assert by_resource["api:a"]["last_run"] == NOW - 80
    assert by_resource["db:b"]["duration_mean"] == 2.0
    by_tool = {s["tool"]: s["total"]["runs"] for s in series(store, "tool")}
    assert by_tool == {"patience": 1, "repeater": 3}
    pairs = {(s["resource_id"], s["tool"]) for s in series(store, "resource_tool")}
    assert pairs == {("api:a", "patience"), ("api:a", "repeater"), ("db:b", "repeater")}
    [everything] = series(store, "none")
    assert everything["total"]["runs"] == 4 and set(everything) == {"total", "points"}
    assert [s["resource_id"] for s in series(store, resource="api:*")] == ["api:a"]
    [only] = series(store, resource="api:*", tool="patience")
    assert only["total"]["runs"] == 1
    assert series(store, resource="nothing*") == []
    assert series(store, start=NOW - 7200, end=NOW - 3600) == []


def test_points_per_step_and_the_histogram(store: MetricsStore) -> None:
    store.add([rec("a", NOW - 3600 + i * 60, 0.01 * (1 + i % 3)) for i in range(60)], "c")
    reply = store.timeseries(None, None, NOW - 3600, NOW, "5m", "resource", True, NOW)
    assert reply["step"] == 300 and reply["start"] % 300 == 0
    assert len(reply["bucket_bounds"]) == 53
    [s] = reply["series"]
    assert len(s["points"]) == 12 and all(p["runs"] == 5 for p in s["points"])
    assert all(sum(p["histogram"]) == 5 for p in s["points"])
    assert s["total"]["duration_p50"] == pytest.approx(0.02, rel=0.42)
    hourly = store.timeseries(None, None, NOW - 3600, NOW, "1h", "resource", False, NOW)
    assert sum(p["runs"] for p in hourly["series"][0]["points"]) == 60


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["a", "b"]),
            st.sampled_from(["repeater", "patience"]),
            st.floats(min_value=NOW - 3 * 3600, max_value=NOW - 1),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_rollups_match_the_records_they_count(
    tmp_path_factory: pytest.TempPathFactory, runs: list
) -> None:
    store = MetricsStore(str(tmp_path_factory.mktemp("s") / "m.db"), 7 * DAY, 1_000_000)
    store.add([rec(r, t, 0.05, ok, tool=tool) for r, tool, t, ok in runs], "c")
    for step, resolution in (("5m", 300), ("1h", 3600)):
        reply = store.timeseries(None, None, NOW - 3 * 3600, NOW, step, "resource_tool", False, NOW)
        counted = {
            (s["resource_id"], s["tool"], p["time"]): (p["runs"], p["successes"])
            for s in reply["series"]
            for p in s["points"]
            if p["runs"]
        }
        expected: dict = {}
        for r, tool, t, ok in runs:
            key = (r, tool, int(t // resolution * resolution))
            n, good = expected.get(key, (0, 0))
            expected[key] = (n + 1, good + ok)
        assert counted == expected
    store.close()


def test_a_resent_record_counts_once_and_odd_exit_codes_are_folded(store: MetricsStore) -> None:
    batch = [rec("a", NOW - 10, record_id="x1"), rec("a", NOW - 9, ok=False, code=9999)]
    assert store.add(batch, "c") == 2
    assert store.add(batch[:1], "c") == 0
    [s] = series(store)
    assert s["total"]["runs"] == 2
    assert s["total"]["exit_codes"] == {"0": 1, str(rollups.OTHER_EXIT): 1}


def test_usage_lands_in_the_rollups_and_in_rate_limit_usage(store: MetricsStore) -> None:
    minute = int(NOW // 60) - 2
    store.add_usage([(minute, "a", "repeater", 5, 2, 1, 0.25)])
    store.add_usage([(minute, "a", "repeater", 1, 0, 1, 0.75)])
    [s] = series(store)
    total = s["total"]
    assert (total["tokens_granted"], total["requests_refused"]) == (6, 2)
    assert (total["requests_waited"], total["wait_seconds"]) == (2, 1.0)
    assert total["runs"] == 0
    [usage] = store.rate_limit_usage("a", None, None, [])
    assert usage["tokens_granted"] == 6 and usage["average_wait"] == 0.5


def test_each_tier_has_its_own_retention(tmp_path: Path) -> None:
    store = MetricsStore(
        str(tmp_path / "m.db"), 7 * DAY, 1_000_000, minute_retention=30 * DAY,
        hour_retention=365 * DAY,
    )  # fmt: skip
    store.add(
        [rec("old", NOW - 40 * DAY), rec("older", NOW - 400 * DAY), rec("new", NOW - 60)], "c"
    )
    assert store.prune(NOW) == 2  # raw records past 7 days
    assert store.count() == 1

    def runs(start: float, end: float, step: str) -> dict[str, int]:
        reply = store.timeseries(None, None, start, end, step, "resource", False, NOW)
        return {s["resource_id"]: s["total"]["runs"] for s in reply["series"]}

    assert runs(NOW - 41 * DAY, NOW - 39 * DAY, "1h") == {"old": 1}  # hours kept a year
    assert runs(NOW - 401 * DAY, NOW - 399 * DAY, "1d") == {}  # past a year: gone
    assert runs(NOW - 3600, NOW, "1m") == {"new": 1}
    minutes = sqlite3.connect(tmp_path / "m.db").execute(
        "SELECT count(*) FROM minute_rollups WHERE time < ?", (NOW - 30 * DAY,)
    )
    assert minutes.fetchone()[0] == 0
    names = sqlite3.connect(tmp_path / "m.db").execute("SELECT resource_id FROM series")
    assert sorted(row[0] for row in names) == ["new", "old"]  # "older" left with no rows
    store.hour_retention = 10 * DAY  # configurable (SIGHUP sets it)
    store.prune(NOW)
    assert runs(NOW - 41 * DAY, NOW - 39 * DAY, "1h") == {}


def test_recent_runs_newest_first_and_following_from_a_cursor(store: MetricsStore) -> None:
    store.add([rec("api:a", NOW - 100 + i, tool="repeater") for i in range(5)], "c")
    store.add([rec("db:b", NOW - 50 + i, tool="patience") for i in range(3)], "c")
    runs, cursor = store.recent_runs(None, None, None, None, None, 4)
    assert [r["start_time"] for r in runs] == [NOW - 48, NOW - 49, NOW - 50, NOW - 96]
    assert cursor == 8 and runs[0]["command"] == ["job", "db:b"] and runs[0]["success"] is True
    runs, _ = store.recent_runs("api:*", None, None, None, None, 10)
    assert {r["resource_id"] for r in runs} == {"api:a"} and len(runs) == 5
    runs, _ = store.recent_runs(None, "patience", NOW - 49, None, None, 10)
    assert [r["start_time"] for r in runs] == [NOW - 48, NOW - 49]
    assert store.recent_runs(None, None, None, None, 8, 10) == ([], 8)
    store.add([rec("api:a", NOW), rec("db:b", NOW)], "c")
    runs, cursor = store.recent_runs("api:*", None, None, None, 8, 10)
    assert [r["id"] for r in runs] == [9] and cursor == 10
    runs, cursor = store.recent_runs(None, None, None, None, 8, 1)
    assert [r["id"] for r in runs] == [9] and cursor == 9  # a full page: go on from it


def test_a_database_from_before_the_rollups_is_counted_into_them(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    store = MetricsStore(str(path), 7 * DAY, 1000)
    store.add([rec("a", NOW - 30), rec("a", NOW - 20, ok=False)], "c")
    store.close()
    db = sqlite3.connect(path)  # make it look like the version before: no rollups, a usage table
    for table in (
        "minute_rollups",
        "hour_rollups",
        "minute_exit_codes",
        "hour_exit_codes",
        "series",
    ):
        db.execute(f"DELETE FROM {table}")
    db.execute(
        "CREATE TABLE usage (minute INTEGER, resource_id TEXT, tool TEXT, granted INTEGER,"
        " denied INTEGER, waited INTEGER, wait_total REAL)"
    )
    db.execute("INSERT INTO usage VALUES (?, 'a', 'repeater', 4, 1, 0, 0.0)", (int(NOW // 60),))
    db.execute("PRAGMA user_version = 0")
    db.commit()
    db.close()
    store = MetricsStore(str(path), 7 * DAY, 1000)
    [s] = series(store, end=NOW + 60)
    assert (s["total"]["runs"], s["total"]["failures"], s["total"]["tokens_granted"]) == (2, 1, 4)
    tables = {row[0] for row in store._read("SELECT name FROM sqlite_master")}
    assert "usage" not in tables


def test_query_bounds_name_the_fix(store: MetricsStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.add([rec(f"r{i}", NOW - 10) for i in range(5)], "c")
    monkeypatch.setattr(rollups, "MAX_SERIES", 3)
    with pytest.raises(QueryError, match="match more than 3 resource and tool pairs: narrow"):
        series(store)
    monkeypatch.setattr(rollups, "MAX_ROWS_READ", 100)
    with pytest.raises(QueryError, match=r"would read up to 180 rollup rows \(3 series x 60\)"):
        series(store, resource="r[012]")
    with pytest.raises(QueryError, match="is not after start"):
        series(store, start=NOW, end=NOW - 1)
