"""The daemon's request handlers: one decoded message in, one reply out (or a Waiter whose reply
comes when the coordinator resolves it).

`Handlers.table` maps each message type to its handler; protocol 1.0's live in
patience.daemon.v1, and the life cycle adds `status`, which speaks of the process. A handler
takes the connection's Session (whom it speaks for) and its own message type. Errors a client
can cause (ProtocolError, CoordinatorError, RateLimitError) are its reply; anything else is a
bug, answered with "internal error" and logged at most once a minute per kind.

The per-request path is kept lean: msgspec decoding, no logging, no awaits.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from patience import __version__
from patience.daemon import protocol, query_replies, v1
from patience.daemon.admission import Waiter
from patience.daemon.coordinator import Client, Coordinator, CoordinatorError
from patience.daemon.framing import Session
from patience.daemon.logthrottle import LogThrottle
from patience.daemon.protocol import (
    Acquire,
    ErrorResponse,
    ExecutionMetrics,
    Handshake,
    HandshakeResponse,
    Metrics,
    MetricsResponse,
    Ping,
    Pong,
    ProtocolError,
    Query,
    QueryResponse,
    RegisterSchedule,
    RegisterScheduleResponse,
    ReportGrants,
    ReportGrantsResponse,
    ResourceStateRequest,
)
from patience.daemon.state_replies import ResourceStateResponse
from patience.daemon.storage import MetricsStore
from patience.ratelimit.algorithms import RateLimitError

__all__ = ["MAX_CLIENT_IDS", "NO_FLEET", "Handler", "Handlers", "QueryRows"]

log = logging.getLogger("patience.daemon")

NO_FLEET = (
    "no fleet: this daemon's backend is memory (daemons share their limits, and show their"
    ' fleet, with [daemon] backend = "redis" and redis_url)'
)
MAX_CLIENT_IDS = 16  # distinct client ids one connection may speak for in its life

Handler = Callable[[Session, Any], "bytes | Waiter"]
# A query: (resource id, start, end, tools) -> its rows.
QueryRows = Callable[[str | None, float | None, float | None, list[str]], list[dict[str, object]]]


class Handlers:
    """`flush_usage` stores the usage counters before a query reads them; `wake` re-arms the
    daemon's timer when waiting requests may have become servable."""

    def __init__(
        self,
        coordinator: Coordinator,
        store: MetricsStore | None,
        flush_usage: Callable[[], None],
        wake: Callable[[], None],
    ) -> None:
        self.coordinator = coordinator
        self.store = store
        self.flush_usage = flush_usage
        self.wake = wake
        self.log_throttle = LogThrottle(log)
        self._anonymous = 0
        # Told of the records newly stored (the counters behind /metrics).
        self.on_stored: Callable[[list[ExecutionMetrics]], None] = lambda records: None
        self.table: dict[type, Handler] = {
            Handshake: self._handshake,
            Acquire: self._acquire,
            ReportGrants: self._report_grants,
            RegisterSchedule: self._register_schedule,
            Metrics: self._metrics,
            Query: self._query,
            ResourceStateRequest: self._resource_state,
            Ping: self._ping,
            protocol.Timeseries: self._timeseries,
            protocol.Runs: self._runs,
            protocol.Fleet: self._no_fleet,  # the fleet registry answers it (Redis backend)
            **v1.handlers(self, coordinator),
        }
        self.queries: dict[str, QueryRows] = {}
        if store is not None:
            self.queries.update(
                resource_summary=self._resource_summary,
                tool_comparison=store.tool_comparison,
                rate_limit_usage=self._rate_limit_usage,
            )

    def handle(self, session: Session, line: bytes) -> bytes | Waiter:
        try:
            message = protocol.decode(line)
            return self.table[type(message)](session, message)
        except (ProtocolError, CoordinatorError, RateLimitError) as exc:
            return protocol.encode(ErrorResponse(error=str(exc)))
        except Exception as exc:  # a bug; a client repeating its request must not flood the log
            self.log_throttle.log(
                logging.ERROR,
                f"internal error: {type(exc).__name__}: {exc}"[:300],
                f"internal error on request {line!r:.200}",
                exc_info=True,
            )
            return protocol.encode(ErrorResponse(error="internal error (see the daemon's log)"))

    def warn(self, key: str, message: str) -> None:
        """A warning a client can provoke: at most one a minute of each kind."""
        self.log_throttle.log(logging.WARNING, key, message)

    # ---- whom a connection speaks for -----------------------------------------------------------

    def client_for(self, session: Session) -> Client:
        """The connection's client; one that skipped the handshake gets an anonymous id."""
        if session.client is None:
            self.speak_for(session, self.anonymous_id("anonymous"), "", time.monotonic())
        assert session.client is not None
        return session.client

    def anonymous_id(self, prefix: str) -> str:
        self._anonymous += 1
        return f"{prefix}-{self._anonymous}"

    def speak_for(self, session: Session, client_id: str, tool: str, now: float) -> None:
        """The connection speaks for `client_id` from now on, instead of its client so far. The
        ids one connection may use are capped, so that it cannot crowd out other clients."""
        ids = session.client_ids
        if client_id not in ids and len(ids) >= MAX_CLIENT_IDS:
            raise CoordinatorError(
                f"too many client ids on one connection ({MAX_CLIENT_IDS});"
                " open another connection for another client"
            )
        client = self.coordinator.connect(client_id, tool, now, session.uid)
        ids.add(client_id)
        if session.client is not None:
            self.coordinator.disconnect(session.client, now)
        session.client = client

    # ---- protocol 2.0 ---------------------------------------------------------------------------

    def _handshake(self, session: Session, message: Handshake) -> bytes:
        offered = message.versions or [message.version or "1.0"]
        version = next((v for v in protocol.PROTOCOL_VERSIONS if v in offered), None)
        if version is None:
            raise ProtocolError(f"unsupported protocol version: {', '.join(offered)}")
        if version != "1.0" and (message.client_id is None or message.tool is None):
            missing = "client_id" if message.client_id is None else "tool"
            raise ProtocolError(f"invalid handshake format: protocol 2.0 needs {missing}")
        now = time.monotonic()
        if version == "1.0":
            client_id = message.client_id or self.anonymous_id(message.client or "v1")
            self.speak_for(session, client_id, message.tool or "patience", now)
            return protocol.encode(HandshakeResponse(status="ok", message="handshake successful"))
        assert message.client_id is not None and message.tool is not None
        self.speak_for(session, message.client_id, message.tool, now)
        return protocol.encode(
            HandshakeResponse(
                status="ok",
                message="handshake successful",
                version=version,
                server_version=__version__,
                client_id=message.client_id,
            )
        )

    def _acquire(self, session: Session, message: Acquire) -> bytes | Waiter:
        result = self.coordinator.acquire(self.client_for(session), message, time.monotonic())
        return result if isinstance(result, Waiter) else protocol.encode(result)

    def _report_grants(self, session: Session, message: ReportGrants) -> bytes:
        """A client back from an outage: its grants of the last window (Unix seconds) count."""
        now = time.monotonic()
        offset = time.time() - now
        times = [at - offset for at in message.times]
        counted = self.coordinator.report_grants(self.client_for(session), message, times, now)
        self.wake()
        return protocol.encode(ReportGrantsResponse(counted=counted))

    def _register_schedule(self, session: Session, message: RegisterSchedule) -> bytes:
        self.coordinator.register_schedule(self.client_for(session), message, time.monotonic())
        return protocol.encode(RegisterScheduleResponse(status="ok"))

    def _metrics(self, session: Session, message: Metrics) -> bytes:
        return protocol.encode(
            MetricsResponse(accepted=self.store_records(session, message.records))
        )

    def store_records(self, session: Session, records: list[ExecutionMetrics]) -> int:
        """Store execution records (a resent one is acknowledged, not counted again)."""
        store = self._metrics_store()
        client = self.client_for(session)
        try:
            fresh = store.unseen(records)
            self.coordinator.record_executions(client, fresh, time.monotonic())
            store.add(fresh, client.id)
            self.on_stored(fresh)
        except CoordinatorError:
            raise
        except Exception as exc:
            log.error("could not store metrics: %s", exc)
            raise CoordinatorError(f"could not store the metrics: {exc}") from None
        return len(records)

    def _metrics_store(self) -> MetricsStore:
        if self.store is None:
            raise CoordinatorError(
                "metrics are disabled in this daemon (set [daemon] metrics_enabled = true)"
            )
        return self.store

    def _query(self, session: Session, message: Query) -> bytes:
        self._metrics_store()
        span = message.time_range
        start = span.start if span else None
        end = span.end if span else None
        if start is not None and end is not None and end < start:
            raise ProtocolError("invalid query format: time_range.end is before time_range.start")
        rows = self.queries[message.query](
            message.resource_id, start, end, list(message.tools or [])
        )
        return protocol.encode(QueryResponse(query=message.query, results=rows))

    def _resource_summary(
        self, resource_id: str | None, start: float | None, end: float | None, tools: list[str]
    ) -> list[dict[str, object]]:
        rows = self._metrics_store().resource_summary(resource_id, start, end, tools)
        for row in rows:
            row["active_clients"] = self.coordinator.active_clients(str(row["resource_id"]))
        return rows

    def _rate_limit_usage(
        self, resource_id: str | None, start: float | None, end: float | None, tools: list[str]
    ) -> list[dict[str, object]]:
        self.flush_usage()
        rows = self._metrics_store().rate_limit_usage(resource_id, start, end, tools)
        for row in rows:
            spec = self.coordinator.limit_of(str(row["resource_id"]))
            row["limit"] = spec.limit.count if spec else None
            row["window"] = spec.limit.window if spec else None
            row["limit_source"] = spec.source if spec else None
            resource = self.coordinator.resources.get(str(row["resource_id"]))
            learned = self.coordinator.learned_state(resource, 0.0) if resource else None
            if learned is not None:  # beside the configured (or declared) limit
                row["learned_from"] = learned.configured or learned.declared
        return rows

    def _resource_state(self, session: Session, message: ResourceStateRequest) -> bytes:
        now = time.monotonic()
        resources = self.coordinator.resource_state(message.resource_id, now, time.time() - now)
        return protocol.encode(ResourceStateResponse(resources=resources))

    def _timeseries(self, session: Session, message: protocol.Timeseries) -> bytes:
        self.flush_usage()
        return query_replies.timeseries_reply(self._metrics_store(), message, time.time())

    def _runs(self, session: Session, message: protocol.Runs) -> bytes:
        return query_replies.runs_reply(self._metrics_store(), message)

    def _no_fleet(self, session: Session, message: protocol.Fleet) -> bytes:
        raise CoordinatorError(NO_FLEET)

    def _ping(self, session: Session, message: Ping) -> bytes:
        return protocol.encode(Pong(time=time.time()))
