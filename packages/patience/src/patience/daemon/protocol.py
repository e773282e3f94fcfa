"""The daemon's messages, protocol 1.0 (the Go `patience`, byte-compatible) and 2.0 (ours).

Every line a client sends is one JSON object whose `type` picks the message. Decoding is typed
and strict: a wrong type or a value out of range is an error reply that names the field
(`$.tokens`), never a crash and never a silent default. Protocol 1.0 messages tolerate unknown
fields (the Go client may add some); 2.0 messages refuse them so that a typo is an error.
A JSON object without `type` is the Go tool's RunMetrics (its metrics ingestion).

docs/protocol.md describes each message with examples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from patience.daemon.alerts.messages import Alerts, UnregisterSchedule
from patience.daemon.feedback_messages import Feedback
from patience.daemon.message_base import Request, ResourceId, Response, StrictRequest, Tool

# The metrics queries' messages, named here as every other message is:
from patience.daemon.query_messages import Fleet as Fleet  # noqa: PLC0414
from patience.daemon.query_messages import FleetResponse as FleetResponse  # noqa: PLC0414
from patience.daemon.query_messages import Query as Query  # noqa: PLC0414
from patience.daemon.query_messages import QueryKind as QueryKind  # noqa: PLC0414
from patience.daemon.query_messages import QueryResponse as QueryResponse  # noqa: PLC0414
from patience.daemon.query_messages import Runs as Runs  # noqa: PLC0414
from patience.daemon.query_messages import RunsResponse as RunsResponse  # noqa: PLC0414
from patience.daemon.query_messages import TimeRange as TimeRange  # noqa: PLC0414
from patience.daemon.query_messages import Timeseries as Timeseries  # noqa: PLC0414
from patience.daemon.query_messages import TimeseriesResponse as TimeseriesResponse  # noqa: PLC0414
from patience.ratelimit.algorithms import MAX_LIMIT, MAX_WINDOW, RateLimitError, check_limit
from patience.settings import ALGORITHMS

__all__ = [
    "MAX_DEPTH",
    "MAX_LINE",
    "MAX_REGISTER_ENTRIES",
    "MAX_REPORTED",
    "MAX_RETRY_OFFSETS",
    "MAX_TOKENS",
    "MAX_V1_ENTRIES_PER_RESOURCE",
    "PROTOCOL_VERSIONS",
    "STOPPING",
    "Acquire",
    "AcquireResponse",
    "AnyRequest",
    "AttemptMetrics",
    "ClientId",
    "Count",
    "ErrorResponse",
    "ExecutionMetrics",
    "Handshake",
    "HandshakeResponse",
    "Metrics",
    "MetricsResponse",
    "Ping",
    "Pong",
    "ProtocolError",
    "RegisterRequest",
    "RegisterResponse",
    "RegisterSchedule",
    "RegisterScheduleResponse",
    "RegisteredRequest",
    "ReportGrants",
    "ReportGrantsResponse",
    "ResourceStateRequest",
    "RunMetrics",
    "ScheduleConfig",
    "ScheduleRequest",
    "ScheduleResponse",
    "Seconds",
    "Status",
    "UnixSeconds",
    "decode",
    "encode",
]

PROTOCOL_VERSIONS = ("2.0", "1.0")  # highest first: the server picks the first both speak
MAX_LINE = 1 << 20  # bytes; a longer line is refused and the connection closed
# Bounds on what one request may ask for (docs/protocol.md, "Bounds"); limits and windows are
# bounded where every limiter is (patience.ratelimit.algorithms.check_limit).
MAX_DEPTH = 512  # JSON nesting always read; deeper lines may meet the decoder's recursion guard
MAX_TOKENS = 1_000_000  # tokens one acquire may ask for
MAX_RETRY_OFFSETS = 1000  # planned attempts in one schedule_request (the Go CLI: at most 1000)
MAX_REGISTER_ENTRIES = 1000  # entries in one register_request
MAX_V1_ENTRIES_PER_RESOURCE = 10_000  # protocol 1.0 booked attempts one resource keeps

ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
if TYPE_CHECKING:
    Algorithm = str
else:  # msgspec checks the name against the one list of algorithms
    Algorithm = Literal[ALGORITHMS]
Seconds = Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)]
Count = Annotated[int, msgspec.Meta(ge=1, le=MAX_LIMIT)]
UnixSeconds = Annotated[int, msgspec.Meta(ge=-(1 << 40), le=1 << 40)]


# ---- both versions -------------------------------------------------------------------------


class Handshake(Request, tag="handshake"):
    """1.0 sends `version` and `client`; 2.0 sends `versions` (those it speaks), `client_id`
    and `tool`."""

    version: str | None = None
    versions: Annotated[list[str], msgspec.Meta(max_length=16)] | None = None
    client: str | None = None
    client_id: ClientId | None = None
    tool: Tool | None = None


# ---- protocol 1.0 --------------------------------------------------------------------------


class ScheduleRequest(Request, tag="schedule_request"):
    """Would attempts at request_time + each offset (ms) fit rate_limit per window_ms?"""

    resource_id: Annotated[str, msgspec.Meta(max_length=256)]
    rate_limit: Count
    window_ms: Count
    request_time: UnixSeconds
    retry_offsets: list[Annotated[int, msgspec.Meta(ge=0, le=1 << 40)]]

    def problem(self) -> str | None:
        return _too_many("retry_offsets", len(self.retry_offsets), MAX_RETRY_OFFSETS)


class RegisteredRequest(msgspec.Struct):
    id: Annotated[str, msgspec.Meta(max_length=512)]
    resource_id: Annotated[str, msgspec.Meta(max_length=256)]
    scheduled_at: UnixSeconds
    expires_at: UnixSeconds


class RegisterRequest(Request, tag="register_request"):
    requests: list[RegisteredRequest]

    def problem(self) -> str | None:
        return _too_many("requests", len(self.requests), MAX_REGISTER_ENTRIES)


class AttemptMetrics(msgspec.Struct):
    duration_seconds: float
    exit_code: int
    success: bool


class RunMetrics(msgspec.Struct):
    """The Go tool's metrics ingestion: one object per connection, no `type`, then EOF."""

    command: Annotated[str, msgspec.Meta(max_length=65_536)]
    final_status: str
    total_duration_seconds: float
    total_attempts: int
    timestamp: float
    command_hash: str = ""
    successful_attempts: int = 0
    failed_attempts: int = 0
    attempts: Annotated[list[AttemptMetrics], msgspec.Meta(max_length=100_000)] = []


# ---- protocol 2.0 --------------------------------------------------------------------------


class Acquire(StrictRequest, tag="acquire"):
    """Take `tokens` of `resource_id`, waiting up to `max_wait` seconds in the daemon's queue.
    `limit`/`window` (seconds) declare the client's own limit, used when the configuration
    has none for this resource; the strictest declared limit holds."""

    resource_id: ResourceId
    tokens: Count = 1
    max_wait: Seconds = 0.0
    limit: Count | None = None
    window: Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW)] | None = None
    algorithm: Algorithm | None = None

    def problem(self) -> str | None:
        tokens, limit = self.tokens, self.limit
        if tokens > MAX_TOKENS:
            return (
                f"tokens: {tokens} at once is more than {MAX_TOKENS}"
                f" (ask for at most {MAX_TOKENS} in one acquire)"
            )
        if limit is not None and tokens > limit:
            return (
                f"tokens: {tokens} at once can never fit the declared limit of {limit}"
                f" (ask for at most {limit}, or declare a larger limit)"
            )
        return _window_problem(self.window)


MAX_REPORTED = 10_000  # grant times one report_grants may carry


class ReportGrants(StrictRequest, tag="report_grants"):
    """A client back from an outage tells the daemon the grants it had in the last window
    (Unix seconds, one token each: those it made locally and those an earlier daemon gave
    it), so that a new daemon counts them. `limit`/`window`/`algorithm` declare its limit
    as in `acquire`."""

    resource_id: ResourceId
    times: Annotated[
        list[Annotated[float, msgspec.Meta(ge=0, le=1 << 40)]],
        msgspec.Meta(max_length=MAX_REPORTED),
    ]
    limit: Count | None = None
    window: Annotated[float, msgspec.Meta(gt=0, le=MAX_WINDOW)] | None = None
    algorithm: Algorithm | None = None

    def problem(self) -> str | None:
        return _window_problem(self.window)


class ScheduleConfig(msgspec.Struct, forbid_unknown_fields=True):
    """A tool's schedule, as `register_schedule` sends it (docs/protocol.md); durations are
    seconds. A "cron" schedule's `interval` is
    the longest gap between its next runs (what the missed-schedule alert waits for)."""

    type: Literal["interval", "count", "duration", "cron"]
    interval: Seconds = 0.0
    count: Count | None = None
    duration: Seconds | None = None
    coordination: bool = False


class RegisterSchedule(StrictRequest, tag="register_schedule"):
    resource_id: ResourceId
    schedule: ScheduleConfig


class ExecutionMetrics(msgspec.Struct, forbid_unknown_fields=True):
    """The unified execution record both tools send. Times are Unix seconds, durations seconds."""

    tool: Tool
    resource_id: ResourceId
    start_time: Annotated[float, msgspec.Meta(ge=0, le=1 << 40)]
    duration: Seconds
    success: bool
    exit_code: int = 0
    command: Annotated[
        list[Annotated[str, msgspec.Meta(max_length=65_536)]], msgspec.Meta(max_length=4096)
    ] = []
    attempt_number: Annotated[int, msgspec.Meta(ge=0)] = 0
    execution_number: Annotated[int, msgspec.Meta(ge=0)] = 0
    labels: Annotated[
        dict[
            Annotated[str, msgspec.Meta(max_length=256)],
            Annotated[str, msgspec.Meta(max_length=4096)],
        ],
        msgspec.Meta(max_length=64),
    ] = {}
    # Made by the client, unique to the record: a record resent with the same id is stored once.
    record_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None


class Metrics(StrictRequest, tag="metrics"):
    """A batch of execution records; acknowledged once they are committed to disk."""

    records: Annotated[list[ExecutionMetrics], msgspec.Meta(min_length=1, max_length=1000)]


class ResourceStateRequest(StrictRequest, tag="resource_state"):
    resource_id: ResourceId | None = None


class Ping(StrictRequest, tag="ping"):
    pass


class Status(StrictRequest, tag="status"):
    pass


AnyRequest = (
    Handshake
    | ScheduleRequest
    | RegisterRequest
    | Acquire
    | ReportGrants
    | RegisterSchedule
    | Metrics
    | Query
    | ResourceStateRequest
    | Ping
    | Status
    | Timeseries
    | Runs
    | Alerts
    | UnregisterSchedule
    | Feedback
    | Fleet
)

# ---- responses -----------------------------------------------------------------------------


STOPPING = "stopping"  # ErrorResponse.code: the daemon is stopping; to a client, it is away


class ErrorResponse(Response, tag="error"):
    """`code` marks an error a client must recognise (only STOPPING so far); absent otherwise."""

    error: str
    code: str | None = None


class HandshakeResponse(Response, tag="handshake_response"):
    status: str
    message: str
    version: str | None = None
    server_version: str | None = None
    client_id: str | None = None


class ScheduleResponse(Response, tag="schedule_response"):
    """`wait_until` (RFC 3339) is always present on a refusal: the Go client sleeps until it."""

    can_schedule: bool
    reason: str
    message: str
    status: str
    wait_until: str | None = None
    scheduled_at: str | None = None
    expires_at: str | None = None


class RegisterResponse(Response, tag="register_response"):
    success: bool
    status: str
    message: str


class AcquireResponse(Response, tag="acquire_response"):
    """`limit` is null when no limit applies; `limit_source` says where the limit in force
    comes from (`config:<pattern>`, `client:<id>`)."""

    granted: bool
    tokens: int
    retry_after: float
    reset_after: float
    remaining: int | None = None
    limit: int | None = None
    window: float | None = None
    algorithm: str | None = None
    limit_source: str | None = None
    waited: float | None = None
    reason: str | None = None
    share: int | None = None  # this client's tokens per window while the daemon is away
    ahead: int | None = None  # on a refusal: requests queued before this one would be
    estimated_wait: float | None = None  # on a refusal: seconds until it would be granted


class ReportGrantsResponse(Response, tag="report_grants_response"):
    counted: int


class RegisterScheduleResponse(Response, tag="register_schedule_response"):
    status: str


class MetricsResponse(Response, tag="metrics_response"):
    accepted: int


class Pong(Response, tag="pong"):
    time: float


# ---- decoding ------------------------------------------------------------------------------


class ProtocolError(Exception):
    """A line that is not a valid request; the message is what the client is told."""


_decoder = msgspec.json.Decoder(AnyRequest)
_run_metrics = msgspec.json.Decoder(RunMetrics)
_encoder = msgspec.json.Encoder()
_TAGS = {
    cls.__struct_config__.tag
    for cls in (
        Handshake,
        ScheduleRequest,
        RegisterRequest,
        Acquire,
        ReportGrants,
        RegisterSchedule,
        Metrics,
        Query,
        ResourceStateRequest,
        Ping,
        Status,
        Timeseries,
        Runs,
        Alerts,
        UnregisterSchedule,
        Feedback,
        Fleet,
    )
}


def decode(line: bytes) -> Request | RunMetrics:
    """One request from one line (without its newline), or ProtocolError naming the problem."""
    try:
        message = _decode(line)
    except RecursionError:  # msgspec's guard, past MAX_DEPTH: refused before the stack runs out
        raise ProtocolError(f"invalid JSON: nested deeper than {MAX_DEPTH} levels") from None
    problem = message.problem() if isinstance(message, Request) else None
    if problem is not None:
        kind = type(message).__struct_config__.tag
        raise ProtocolError(f"invalid {str(kind).replace('_', ' ')} format: {problem}")
    return message


def _decode(line: bytes) -> Request | RunMetrics:
    try:
        message: Request | RunMetrics = _decoder.decode(line)
        return message
    except msgspec.ValidationError as exc:
        error = exc
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise ProtocolError("invalid JSON") from None
    # The slow path: work out which message was meant, to say what is wrong with it.
    try:
        raw = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):  # found broken past the typed error
        raise ProtocolError("invalid JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid message: expected a JSON object")
    kind = raw.get("type")
    if kind is None:
        try:
            return _run_metrics.decode(line)
        except msgspec.ValidationError as inner:
            raise ProtocolError(
                f'message has no "type" and is not a RunMetrics record ({inner})'
            ) from None
    if not isinstance(kind, str) or kind not in _TAGS:
        raise ProtocolError(f"unknown message type: {_show(kind)}")
    raise ProtocolError(f"invalid {kind.replace('_', ' ')} format: {error}")


def _too_many(field: str, count: int, most: int) -> str | None:
    if count <= most:
        return None
    return f"{field}: {count} entries, more than {most} (send at most {most} in one request)"


def _window_problem(window: float | None) -> str | None:
    """A declared window outside what every limiter takes (check_limit), or None."""
    try:
        if window is not None:
            check_limit(1, window)
    except RateLimitError as exc:
        return f"window: {exc}"
    return None


def encode(response: Response) -> bytes:
    """One reply line, newline included."""
    return _encoder.encode(response) + b"\n"


def _show(value: object) -> str:
    text = _encoder.encode(value).decode()
    return text if len(text) <= 64 else text[:61] + "..."
