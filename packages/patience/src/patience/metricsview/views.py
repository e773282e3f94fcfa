"""What each `metrics` form asks the daemon and the rows it shows: summary per resource, the
tool comparison, rate-limit usage, the most recent runs, and the trend's points.

Every figure comes from the daemon's rollups (`timeseries`) or its records (`runs`); the rows
are what `--json` prints, one object per line, and the columns what a table shows of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from patience.durations import format_duration
from patience.metricsview.render import Column, count, percent, seconds, text, when

if TYPE_CHECKING:
    from patience.daemon.client import DaemonClient

__all__ = [
    "COLUMNS",
    "Filters",
    "run_rows",
    "summary_rows",
    "tool_rows",
    "trend_points",
    "usage_rows",
]

Row = dict[str, object]
TIMEOUT = 10.0  # seconds for one query: a large range over many resources takes a while


class Filters(NamedTuple):
    """The command line's filters: a resource glob, a tool, a range (Unix seconds), a step."""

    resource: str | None
    tool: str | None
    start: float | None
    end: float | None
    step: str | None = None


def _ask(client: DaemonClient, message: Row, filters: Filters) -> Row:
    for field in ("resource", "tool", "start", "end"):
        value = getattr(filters, field)
        if value is not None:
            message[field] = value
    return client.request(message, TIMEOUT)


def _series(client: DaemonClient, filters: Filters, group_by: str, **extra: object) -> list[Row]:
    reply = _ask(client, {"type": "timeseries", "group_by": group_by, **extra}, filters)
    series = reply["series"]
    assert isinstance(series, list)
    return series


def _totals(series: list[Row], key: str, fields: tuple[str, ...]) -> list[Row]:
    rows = []
    for entry in series:
        total = entry["total"]
        assert isinstance(total, dict)
        rows.append({key: entry[key], **{field: total[field] for field in fields}})
    return rows


_OUTCOMES = ("runs", "successes", "failures", "success_rate", "duration_mean")


def summary_rows(client: DaemonClient, filters: Filters) -> list[Row]:
    """Per resource: runs, outcomes, duration percentiles, the latest run."""
    series = _series(client, filters, "resource")
    fields = (*_OUTCOMES, "duration_p50", "duration_p95", "last_run")
    return [row for row in _totals(series, "resource_id", fields) if row["runs"]]


def tool_rows(client: DaemonClient, filters: Filters) -> list[Row]:
    """Per tool (rpr is `repeater`): runs, outcomes and duration percentiles side by side."""
    series = _series(client, filters, "tool")
    fields = (*_OUTCOMES, "duration_p50", "duration_p95", "duration_p99")
    return [row for row in _totals(series, "tool", fields) if row["runs"]]


def usage_rows(client: DaemonClient, filters: Filters) -> list[Row]:
    """Per resource that saw rate-limit activity: tokens granted, requests refused, requests
    that waited and their average wait, with the limit in force now."""
    series = _series(client, filters, "resource")
    fields = ("tokens_granted", "requests_refused", "requests_waited", "wait_seconds")
    rows = [
        row
        for row in _totals(series, "resource_id", fields)
        if row["tokens_granted"] or row["requests_refused"] or row["requests_waited"]
    ]
    limits = {}
    if rows:
        for resource in client.resource_state():
            limits[resource["id"]] = resource.get("rate_limit") or {}
    for row in rows:
        waited, wait = row.pop("requests_waited"), row.pop("wait_seconds")
        assert isinstance(waited, int) and isinstance(wait, float)
        row["requests_waited"] = waited
        row["average_wait"] = wait / waited if waited else 0.0
        limit = limits.get(row["resource_id"], {})
        assert isinstance(limit, dict)
        row["limit"], row["window"] = limit.get("limit"), limit.get("window")
        learned = limit.get("learned")  # a limit learned from throttle signals: the one it
        row["learned_from"] = (  # learns under (configured, else declared) beside it
            learned.get("configured") or learned.get("declared")
            if isinstance(learned, dict)
            else None
        )
    return rows


def run_rows(
    client: DaemonClient, filters: Filters, limit: int, after: int | None = None
) -> tuple[list[Row], int]:
    """The most recent `limit` runs, oldest first (or those stored after record `after`), and
    the cursor to follow from."""
    message: Row = {"type": "runs", "limit": limit}
    if after is not None:
        message["after"] = after
    reply = _ask(client, message, filters._replace(step=None))
    runs, cursor = reply["runs"], reply["cursor"]
    assert isinstance(runs, list) and isinstance(cursor, int)
    return (runs[::-1] if after is None else runs), cursor


def trend_points(client: DaemonClient, filters: Filters) -> tuple[int, list[Row]]:
    """(step in seconds, points) of everything the filters match, merged into one series."""
    extra: Row = {"histogram": True}
    if filters.step is not None:
        extra["step"] = filters.step
    reply = _ask(client, {"type": "timeseries", "group_by": "none", **extra}, filters)
    step, series = reply["step"], reply["series"]
    assert isinstance(step, int) and isinstance(series, list)
    if not series:
        return step, []
    points = series[0]["points"]
    assert isinstance(points, list)
    return step, points


def _command(value: object) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else "-"


def _window(value: object) -> str:
    return format_duration(value) if isinstance(value, int | float) else "-"


def _wait(value: object) -> str:
    return seconds(value) if value else "-"


# What the summary per resource and the tool comparison both show of the runs.
_RUN_COLUMNS = (
    Column("RUNS", "runs", count),
    Column("OK", "successes", count),
    Column("FAILED", "failures", count, alarm=True),
    Column("SUCCESS", "success_rate", percent),
    Column("MEAN", "duration_mean", seconds),
    Column("P50", "duration_p50", seconds),
    Column("P95", "duration_p95", seconds),
)

COLUMNS: dict[str, list[Column]] = {
    "summary": [
        Column("RESOURCE", "resource_id", left=True),
        *_RUN_COLUMNS,
        Column("LAST RUN", "last_run", when, left=True),
    ],
    "tools": [
        Column("TOOL", "tool", left=True),
        *_RUN_COLUMNS,
        Column("P99", "duration_p99", seconds),
    ],
    "usage": [
        Column("RESOURCE", "resource_id", left=True),
        Column("GRANTED", "tokens_granted", count),
        Column("REFUSED", "requests_refused", count, alarm=True),
        Column("WAITED", "requests_waited", count),
        Column("AVG WAIT", "average_wait", _wait),
        Column("LIMIT", "limit", count),
        Column("WINDOW", "window", _window),
        Column("LEARNED FROM", "learned_from", count),
    ],
    "runs": [
        Column("STARTED", "start_time", when, left=True),
        Column("RESOURCE", "resource_id", left=True),
        Column("TOOL", "tool", left=True),
        Column("EXIT", "exit_code", text, alarm=True),
        Column("DURATION", "duration", seconds),
        Column("COMMAND", "command", _command, left=True),
    ],
    "trend": [
        Column("TIME", "time", when, left=True),
        Column("RUNS", "runs", count),
        Column("SUCCESS", "success_rate", percent),
        Column("P50", "duration_p50", seconds),
        Column("P95", "duration_p95", seconds),
    ],
}
