"""What the daemon shows of its state: the replies of `status` and `resource_state`
(docs/protocol.md), apart from the messages a client sends (patience.daemon.protocol)."""

from __future__ import annotations

import msgspec

from patience.daemon.feedback_messages import LearnedState
from patience.daemon.message_base import Response
from patience.daemon.protocol import ScheduleConfig

__all__ = [
    "ClientState",
    "RateLimitState",
    "ResourceStateResponse",
    "SharedResource",
    "StatusResponse",
]


class ClientState(msgspec.Struct):
    """One client's use of a resource, in `resource_state` replies. Times are Unix seconds."""

    client_id: str
    tool: str
    last_execution: float | None
    execution_count: int
    rate_limit_tokens: int
    connected: bool
    schedule: ScheduleConfig | None = None


class RateLimitState(msgspec.Struct):
    limit: int
    window: float
    algorithm: str
    source: str
    remaining: int
    waiting: int  # 2.0 requests queued, and 1.0 clients asleep until their booked slot
    booked: int = 0  # protocol 1.0 attempts booked and still counting
    learned: LearnedState | None = None  # the limit learned from throttle signals


class SharedResource(msgspec.Struct):
    """One resource's state: the reply of `resource_state` (docs/protocol.md)."""

    id: str
    type: str
    rate_limit: RateLimitState | None
    active_clients: dict[str, ClientState]
    clients_by_tool: dict[str, int]
    total_executions: int
    tokens_granted: int
    last_activity: float | None


class ResourceStateResponse(Response, tag="resource_state_response"):
    resources: list[SharedResource]


class StatusResponse(Response, tag="status_response"):
    pid: int
    version: str
    uptime: float
    socket: str
    protocol_versions: list[str]
    resources: int
    clients: int
    connections: int
    waiting: int
    metrics_enabled: bool
    backend: str = "memory"  # where rate-limit state lives: "memory" or "redis" (multi-host)
    redis_url: str | None = None  # backend "redis": its server, without credentials
    redis_unreachable_since: float | None = None  # Unix time: limits are local until it is back
