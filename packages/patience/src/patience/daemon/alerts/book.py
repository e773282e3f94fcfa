"""The alerts' life cycle, as pure code (the clock is a parameter).

One alert per (rule, resource) at a time. A finding opens it as `pending`; once its condition
has held for the finding's `hold_for`, it is `firing` (a pending alert whose condition stops
holding is dropped unseen). A firing alert resolves only once its condition has stayed clear
for `min_hold`: a condition that comes back within that time keeps the same alert firing, so
it neither flaps nor notifies twice. Tools and clients gather over the alert's life.
Resolved alerts are remembered (the newest HISTORY) for `alerts --all`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from patience.daemon.alerts.rules import Finding

__all__ = ["HISTORY", "Alert", "Book"]

HISTORY = 1000  # resolved alerts remembered


class Alert:
    """`starts_at`: when it began pending, then when it fired; `ends_at`: when it resolved;
    Unix seconds."""

    __slots__ = (
        "clear_since",
        "clients",
        "ends_at",
        "pending_since",
        "resource",
        "rule",
        "starts_at",
        "status",
        "summary",
        "tools",
    )

    def __init__(self, finding: Finding, now: float) -> None:
        self.rule = finding.rule
        self.resource = finding.resource
        self.status = "pending"
        self.pending_since = self.starts_at = now
        self.ends_at: float | None = None
        self.clear_since: float | None = None
        self.summary = finding.summary
        self.tools: set[str] = set()
        self.clients: set[str] = set()

    def view(self) -> dict[str, object]:
        """The alert as `alerts --json` prints it and the notifiers send it."""
        return {
            "rule": self.rule,
            "resource": self.resource,
            "status": self.status,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "tools": sorted(self.tools),
            "clients": sorted(self.clients),
            "summary": self.summary,
        }


class Book:
    def __init__(self, history: int = HISTORY) -> None:
        self.active: dict[tuple[str, str], Alert] = {}
        self.resolved: deque[Alert] = deque(maxlen=history)

    def update(
        self, findings: Iterable[Finding], now: float, min_hold: Callable[[str], float]
    ) -> list[dict[str, object]]:
        """Apply this evaluation's findings; returns the views of the alerts that fired or
        resolved now (what the notifiers are told). `min_hold(resource)` in seconds."""
        changed: list[dict[str, object]] = []
        seen: set[tuple[str, str]] = set()
        for finding in findings:
            key = (finding.rule, finding.resource)
            seen.add(key)
            alert = self.active.get(key)
            if alert is None:
                alert = self.active[key] = Alert(finding, now)
            alert.summary = finding.summary
            alert.tools.update(finding.tools)
            alert.clients.update(finding.clients)
            alert.clear_since = None
            if alert.status == "pending" and now - alert.pending_since >= finding.hold_for:
                alert.status = "firing"
                alert.starts_at = now
                changed.append(alert.view())
        for key, alert in list(self.active.items()):
            if key in seen:
                continue
            if alert.status == "pending":
                del self.active[key]
                continue
            if alert.clear_since is None:
                alert.clear_since = now
            if now - alert.clear_since >= min_hold(alert.resource):
                alert.status = "resolved"
                alert.ends_at = now
                del self.active[key]
                self.resolved.append(alert)
                changed.append(alert.view())
        return changed

    def views(self, include_resolved: bool) -> list[dict[str, object]]:
        """Pending and firing alerts (and the resolved ones remembered), oldest first."""
        alerts = list(self.active.values())
        if include_resolved:
            alerts += self.resolved
        return [a.view() for a in sorted(alerts, key=lambda a: (a.starts_at, a.rule, a.resource))]

    def firing(self) -> dict[tuple[str, str], int]:
        """1 per (rule, resource) firing now: patience_alerts_firing's samples."""
        return {key: 1 for key, alert in self.active.items() if alert.status == "firing"}
