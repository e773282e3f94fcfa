"""The replies to the `timeseries` and `runs` queries: the store's answer as a message, and a
query past its bounds (daemon/timeseries.py) as the protocol error that names the bound."""

from __future__ import annotations

from patience.daemon import protocol
from patience.daemon.protocol import (
    ProtocolError,
    Runs,
    RunsResponse,
    Timeseries,
    TimeseriesResponse,
)
from patience.daemon.storage import MetricsStore
from patience.daemon.timeseries import QueryError

__all__ = ["runs_reply", "timeseries_reply"]


def timeseries_reply(store: MetricsStore, message: Timeseries, now: float) -> bytes:
    """`now` (Unix seconds) is the end of a range left open."""
    try:
        reply = store.timeseries(
            message.resource,
            message.tool,
            message.start,
            message.end,
            message.step,
            message.group_by,
            message.histogram,
            now,
        )
    except QueryError as exc:
        raise ProtocolError(f"invalid timeseries format: {exc}") from None
    return protocol.encode(TimeseriesResponse(**reply))  # type: ignore[arg-type]


def runs_reply(store: MetricsStore, message: Runs) -> bytes:
    if message.start is not None and message.end is not None and message.end <= message.start:
        raise ProtocolError("invalid runs format: end is not after start: give a later end")
    try:
        rows, cursor = store.recent_runs(
            message.resource, message.tool, message.start, message.end, message.after,
            message.limit,
        )  # fmt: skip
    except QueryError as exc:
        raise ProtocolError(f"invalid runs format: {exc}") from None
    return protocol.encode(RunsResponse(runs=rows, cursor=cursor))
