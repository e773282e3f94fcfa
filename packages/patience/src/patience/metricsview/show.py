"""Each `metrics` form from query to output: rows as a table or JSON lines, the runs followed
as they are stored, the trend as sparklines. `fancy` is a person's terminal (a TTY without
NO_COLOR): colour in tables, a chart for the trend; otherwise plain text and numbers."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TextIO

from patience.cliparse import Parsed
from patience.daemon.client import DaemonClient
from patience.durations import format_duration
from patience.exits import ExitStatus
from patience.metricsview import charts, views
from patience.metricsview.render import json_lines, percent, seconds, table, when
from patience.stderr import write

__all__ = ["FORMS"]

Row = dict[str, object]
FOLLOW_EVERY = 0.5  # seconds between looks for new runs


def _rows(form: str, fetch: Callable[[DaemonClient, views.Filters], list[Row]]) -> Form:
    def show(
        client: DaemonClient, parsed: Parsed, filters: views.Filters, out: TextIO, fancy: bool
    ) -> int:
        rows = fetch(client, filters)
        if not rows:
            _nothing(filters)
        elif parsed.values["json"]:
            json_lines(rows, out)
        else:
            table(rows, views.COLUMNS[form], out, fancy)
        return ExitStatus.OK

    return show


def _nothing(filters: views.Filters) -> None:
    """An empty result is not an error: say so on stderr, print nothing on stdout."""
    since = "the first record" if filters.start is None else when(filters.start)
    until = "now" if filters.end is None else when(filters.end)
    matching = "".join(
        f" {label} {value}"
        for label, value in (("resource", filters.resource), ("tool", filters.tool))
        if value is not None
    )
    write(f"no data from {since} to {until}{matching and ' for' + matching}\n")


def _runs(
    client: DaemonClient, parsed: Parsed, filters: views.Filters, out: TextIO, fancy: bool
) -> int:
    limit = parsed.values["limit"]
    assert isinstance(limit, int)
    as_json = bool(parsed.values["json"])
    rows, cursor = views.run_rows(client, filters, limit)
    header = True
    if rows:
        _print_runs(rows, out, as_json, fancy, header)
        header = False
    elif not parsed.values["follow"]:
        _nothing(filters)
    while parsed.values["follow"]:
        time.sleep(FOLLOW_EVERY)
        rows, cursor = views.run_rows(client, filters, 1000, after=cursor)
        if rows:
            _print_runs(rows, out, as_json, fancy, header)
            header = False
    return ExitStatus.OK


def _print_runs(rows: list[Row], out: TextIO, as_json: bool, fancy: bool, header: bool) -> None:
    if as_json:
        json_lines(rows, out)
    else:
        table(rows, views.COLUMNS["runs"], out, fancy, header)
        out.flush()


def _trend(
    client: DaemonClient, parsed: Parsed, filters: views.Filters, out: TextIO, fancy: bool
) -> int:
    step, points = views.trend_points(client, filters)
    if not points:
        _nothing(filters)
        return ExitStatus.OK
    fields = ("time", "runs", "successes", "failures", "success_rate")
    rows = [{f: p[f] for f in (*fields, "duration_p50", "duration_p95")} for p in points]
    if parsed.values["json"]:
        json_lines(rows, out)
    elif fancy:
        _chart(points, step, out)
    else:
        table(rows, views.COLUMNS["trend"], out, False)
    return ExitStatus.OK


def _chart(points: list[Row], step: int, out: TextIO) -> None:
    """Four labelled sparklines over a time axis, fitted to the terminal's width."""
    width = max(10, shutil.get_terminal_size().columns - 32)
    shown = charts.fit(points, width)
    per = format_duration(step * (-(-len(points) // len(shown))))
    out.write(f"{when(points[0]['time'])} .. {when(_end(points, step))}, one column per {per}\n")
    runs = [_number(p["runs"]) for p in shown]
    rate = [_maybe(p["success_rate"]) for p in shown]
    p50 = [_maybe(p["duration_p50"]) for p in shown]
    p95 = [_maybe(p["duration_p95"]) for p in shown]
    total = sum(runs)
    ok = sum(_number(p["successes"]) for p in points)
    lines = [
        ("runs", charts.sparkline(runs, 0.0), f"{total:,.0f} in all, at most {max(runs):,.0f}"),
        ("success", charts.sparkline(rate, 0.0), f"{percent(ok / total if total else None)}"),
        ("p50", charts.sparkline(p50, 0.0), _span(p50)),
        ("p95", charts.sparkline(p95, 0.0), _span(p95)),
    ]
    for label, line, note in lines:
        out.write(f"{label:>8} {line}  {note}\n")


def _end(points: list[Row], step: int) -> float:
    return _number(points[-1]["time"]) + step


def _span(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    return f"{seconds(min(present))} .. {seconds(max(present))}" if present else "-"


def _number(value: object) -> float:
    assert isinstance(value, int | float)
    return float(value)


def _maybe(value: object) -> float | None:
    return None if value is None else _number(value)


Form = Callable[[DaemonClient, Parsed, views.Filters, TextIO, bool], int]
FORMS: dict[str, Form] = {
    "summary": _rows("summary", views.summary_rows),
    "tools": _rows("tools", views.tool_rows),
    "usage": _rows("usage", views.usage_rows),
    "runs": _runs,
    "trend": _trend,
}
