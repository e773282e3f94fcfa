"""The webhook's body: the JSON Prometheus Alertmanager POSTs to its webhook receivers
(version 4), so that a receiver written for Alertmanager (a chat bridge, an incident tool)
takes our alerts as they are. One alert per message: each firing and each resolution."""

from __future__ import annotations

import hashlib
import socket
from datetime import UTC, datetime

__all__ = ["RECEIVER", "ZERO_TIME", "labels_of", "payload", "rfc3339"]

RECEIVER = "patience-daemon"
ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's endsAt of an alert still firing


def rfc3339(at: float | None) -> str:
    if at is None:
        return ZERO_TIME
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def labels_of(alert: dict[str, object]) -> dict[str, str]:
    """What identifies an alert: the same labels every time it is sent."""
    return {
        "alertname": f"patience_{alert['rule']}",
        "rule": str(alert["rule"]),
        "resource": str(alert["resource"]),
        "instance": socket.gethostname(),
        "job": RECEIVER,
        "severity": "warning",
    }


def payload(alert: dict[str, object], external_url: str = "") -> dict[str, object]:
    """The version 4 message for one alert view (book.Alert.view)."""
    labels = labels_of(alert)
    tools, clients = alert["tools"], alert["clients"]
    assert isinstance(tools, list) and isinstance(clients, list)
    annotations = {
        "summary": f"{alert['rule']} on {alert['resource']}: {alert['summary']}",
        "description": str(alert["summary"]),
        "tools": ", ".join(str(t) for t in tools),
        "clients": ", ".join(str(c) for c in clients),
    }
    starts, ends = alert["starts_at"], alert["ends_at"]
    assert isinstance(starts, float | int) and (ends is None or isinstance(ends, float | int))
    fingerprint = hashlib.sha256(repr(sorted(labels.items())).encode()).hexdigest()[:16]
    status = str(alert["status"])
    group = {"alertname": labels["alertname"], "resource": labels["resource"]}
    group_key = "{}:{" + ", ".join(f'{k}="{v}"' for k, v in group.items()) + "}"
    return {
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": status,
        "receiver": RECEIVER,
        "groupLabels": group,
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [
            {
                "status": status,
                "labels": labels,
                "annotations": annotations,
                "startsAt": rfc3339(float(starts)),
                "endsAt": rfc3339(None if ends is None else float(ends)),
                "generatorURL": external_url,
                "fingerprint": fingerprint,
            }
        ],
    }
