"""The `alerts` query of protocol 2.0 and its reply (docs/protocol.md, "alerts"), and
`unregister_schedule`, which a tool sends when it ends a registered schedule on purpose, so
that its silence is not taken for a missed schedule."""

from __future__ import annotations

from patience.daemon.message_base import ResourceId, Response, StrictRequest

__all__ = ["Alerts", "AlertsResponse", "UnregisterSchedule", "UnregisterScheduleResponse"]


class Alerts(StrictRequest, tag="alerts"):
    """The pending and firing alerts; with `all`, the resolved ones the daemon remembers too."""

    all: bool = False


class AlertsResponse(Response, tag="alerts_response"):
    """`alerts`: one object per alert (rule, resource, status, starts_at, ends_at, tools,
    clients, summary), oldest first; `notifiers`: each notifier's counters."""

    alerts: list[dict[str, object]]
    notifiers: list[dict[str, object]]


class UnregisterSchedule(StrictRequest, tag="unregister_schedule"):
    resource_id: ResourceId


class UnregisterScheduleResponse(Response, tag="unregister_schedule_response"):
    status: str
