"""The 2.0 queries: `query` (totals per resource, per tool, rate-limit use), `timeseries`
(series of points from the rollups), `runs` (the most recent execution records, or those
stored since a cursor) and `fleet` (the live daemons sharing this one's Redis).
docs/protocol.md describes them with examples.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from patience.daemon.message_base import ResourceId, Response, StrictRequest, Tool

__all__ = [
    "MAX_RUNS",
    "Fleet",
    "FleetResponse",
    "Query",
    "QueryKind",
    "QueryResponse",
    "Runs",
    "RunsResponse",
    "TimeRange",
    "Timeseries",
    "TimeseriesResponse",
]

Moment = Annotated[float, msgspec.Meta(ge=0, le=1 << 40)]  # a Unix time in a query
Glob = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]  # matches resource ids


class TimeRange(msgspec.Struct, forbid_unknown_fields=True):
    """Unix seconds; either end may be open."""

    start: float | None = None
    end: float | None = None


QueryKind = Literal["resource_summary", "tool_comparison", "rate_limit_usage"]


class Query(StrictRequest, tag="query"):
    """Totals over a time range: `query` names which (its field is not called `type`, which
    names the message)."""

    query: QueryKind
    resource_id: ResourceId | None = None
    time_range: TimeRange | None = None
    tools: Annotated[list[Tool], msgspec.Meta(max_length=2)] | None = None


class Timeseries(StrictRequest, tag="timeseries"):
    """Series of points from the rollups: `resource` is a glob (`*`, `?`, `[...]`), `start`
    and `end` Unix seconds (default: the day before now), `step` one of STEPS (default: chosen
    from the range), `group_by` what each series keeps apart; `histogram` adds each point's
    duration bucket counts. Bounds: daemon/timeseries.py."""

    resource: Glob | None = None
    tool: Tool | None = None
    start: Moment | None = None
    end: Moment | None = None
    step: Literal["1m", "5m", "1h", "1d"] | None = None
    group_by: Literal["resource", "tool", "resource_tool", "none"] = "resource"
    histogram: bool = False


MAX_RUNS = 1000  # records one runs request may return


class Runs(StrictRequest, tag="runs"):
    """The most recent execution records (newest first), or with `after` those stored after
    that record id (oldest first): the reply's `cursor` is the `after` of the next request."""

    resource: Glob | None = None
    tool: Tool | None = None
    start: Moment | None = None
    end: Moment | None = None
    after: Annotated[int, msgspec.Meta(ge=0)] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=MAX_RUNS)] = 20


class QueryResponse(Response, tag="query_response"):
    query: str
    results: list[dict[str, object]]


class TimeseriesResponse(Response, tag="timeseries_response"):
    """`start`/`end` are the range widened to whole steps; `bucket_bounds` (with `histogram`)
    the upper bounds of the duration buckets, in seconds."""

    start: int
    end: int
    step: int
    group_by: str
    series: list[dict[str, object]]
    bucket_bounds: list[float] | None = None


class RunsResponse(Response, tag="runs_response"):
    runs: list[dict[str, object]]
    cursor: int


class Fleet(StrictRequest, tag="fleet"):
    """The live daemons of the fleet (the Redis backend): patience.daemon.fleet."""


class FleetResponse(Response, tag="fleet_response"):
    """`daemons` as patience.daemon.fleet_records.view makes them (this daemon first); `total`
    live daemons, of which at most MAX_DAEMONS are read (`truncated`); `skipped` records that
    could not be read; `as_of` when the view was read (Unix seconds; None: not yet), `fresh`
    whether that was within the last two heartbeats (`heartbeat`, seconds)."""

    daemons: list[dict[str, object]]
    total: int
    truncated: bool
    skipped: int
    as_of: float | None
    fresh: bool
    heartbeat: float
