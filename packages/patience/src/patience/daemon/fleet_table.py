"""`patience-daemon status --fleet`: the `fleet` query's reply as a table, one daemon a line
(this one marked `*`): host, pid, version, uptime, clients per tool, and for each resource
the tokens it granted in the last window, of the limit, and its share of the fleet's grants
there."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

from patience.durations import format_duration

__all__ = ["fleet_lines"]

HEADER = ("", "HOST", "PID", "VERSION", "UP", "CLIENTS", "RESOURCES")


def fleet_lines(reply: Mapping[str, object], now: float) -> list[str]:
    """The table's lines; `now` (Unix seconds) for the uptimes and the view's age."""
    daemons = reply.get("daemons")
    rows = (
        [_row(d, now) for d in daemons if isinstance(d, dict)] if isinstance(daemons, list) else []
    )
    total = reply.get("total", len(rows))
    as_of = reply.get("as_of")
    when = (
        time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(as_of))
        if isinstance(as_of, int | float)
        else "never"
    )
    head = f"fleet: {total} live daemons (read {when})"
    if reply.get("truncated"):
        head += f"; showing the {len(rows)} most recently renewed"
    if not reply.get("fresh"):
        head += "; not renewed since: is Redis reachable? (patience-daemon status)"
    return [head, *_aligned([HEADER, *rows])]


def _row(daemon: Mapping[str, object], now: float) -> tuple[str, ...]:
    clients = daemon.get("clients")
    tools = (
        ", ".join(f"{tool} {count}" for tool, count in sorted(clients.items()))
        if isinstance(clients, dict)
        else ""
    )
    resources = daemon.get("resources")
    used = (
        [_resource(r) for r in resources if isinstance(r, dict)]
        if isinstance(resources, list)
        else []
    )
    omitted = daemon.get("omitted")
    if isinstance(omitted, int) and omitted:
        used.append(f"and {omitted} more")
    started = daemon.get("started")
    up = format_duration(max(0, round(now - started))) if isinstance(started, int | float) else "?"
    return (
        "*" if daemon.get("self") else "",
        str(daemon.get("host", "?")),
        str(daemon.get("pid", "?")),
        str(daemon.get("version", "?")),
        up,
        tools or "-",
        "; ".join(used) or "-",
    )


def _resource(resource: Mapping[str, object]) -> str:
    text = f"{resource.get('id')}: {resource.get('granted')}"
    limit, window = resource.get("limit"), resource.get("window")
    if isinstance(limit, int) and isinstance(window, int | float):
        text += f" of {limit} per {format_duration(float(window))}"
    share = resource.get("share")
    if isinstance(share, int | float):
        text += f" ({share:.0%} of the fleet's)"
    return text


def _aligned(rows: Sequence[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER) - 1)]
    return [
        "  ".join([*(c.ljust(w) for c, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
