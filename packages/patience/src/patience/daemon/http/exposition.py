"""`GET /metrics`: the daemon's state in Prometheus's exposition format.

A custom collector reads the live state at scrape time (no metric objects updated on the
socket path): the counters since start (patience.daemon.totals), the status reply, and the
resource_state reply of each resource named in the labels. Resource labels are bounded by
`[daemon] http_max_resources`: the first resources seen keep their id, every later one is
folded into `resource="other"` (its waiting requests summed; limits are not summed, they mean
nothing together). The alerts' families are in alert_metrics. docs/observability.md lists
every metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from patience.daemon.http.alert_metrics import alert_metrics
from patience.daemon.http.view import AskError, DaemonView
from patience.daemon.totals import DURATION_BUCKETS, OTHER, Totals

__all__ = ["DaemonCollector", "registry_for"]

PREFIX = "patience_"


def registry_for(view: DaemonView) -> CollectorRegistry:
    """A registry of its own (not the process-wide default) holding only our collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DaemonCollector(view))
    return registry


class DaemonCollector(Collector):
    def __init__(self, view: DaemonView) -> None:
        self.view = view

    def collect(self) -> Iterator[Metric]:
        status = self.view.ask({"type": "status"})
        totals = self.view.totals()
        yield from _daemon(status, self.view.started)
        yield from _clients(self.view.clients_by_tool())
        yield from _resources(self.view, totals, int(status.get("waiting", 0)))
        yield from _usage(totals)
        yield from _executions(totals)
        yield from alert_metrics(self.view.ask({"type": "alerts"}), totals.resources)


def _daemon(status: dict[str, Any], started: float) -> Iterator[Metric]:
    backend = str(status.get("backend", "memory"))
    info = InfoMetricFamily(PREFIX + "daemon", "The daemon's version and rate-limit backend.")
    info.add_metric([], {"version": str(status["version"]), "backend": backend})
    yield info
    yield GaugeMetricFamily(
        PREFIX + "daemon_start_time_seconds",
        "When the daemon started, in Unix seconds.",
        value=started,
    )
    up = GaugeMetricFamily(
        PREFIX + "daemon_backend_up",
        "1 while the rate-limit backend answers (memory: always; redis: 0 while unreachable).",
        labels=["backend"],
    )
    up.add_metric([backend], 0.0 if status.get("redis_unreachable_since") else 1.0)
    yield up
    for key, help_text in (
        ("connections", "Open socket connections."),
        ("clients", "Clients the daemon tracks."),
        ("resources", "Resources the daemon tracks."),
    ):
        yield GaugeMetricFamily(PREFIX + f"daemon_{key}", help_text, value=float(status[key]))


def _clients(by_tool: dict[str, int]) -> Iterator[Metric]:
    family = GaugeMetricFamily(
        PREFIX + "active_clients", "Clients the daemon tracks, per tool.", labels=["tool"]
    )
    for tool, count in sorted(by_tool.items()):
        family.add_metric([tool], float(count))
    yield family


# Per named resource: its gauge families' keys, names and help.
_RESOURCE_GAUGES = (
    ("waiting", "waiting_requests",
     "Requests waiting for tokens (and protocol 1.0 clients asleep until their slot)."),
    ("limit", "resource_limit_tokens", "The limit in force: tokens per window."),
    ("window", "resource_window_seconds", "The window of the limit."),
    ("remaining", "resource_remaining_tokens", "Tokens left in the current window."),
    ("utilisation", "resource_utilisation_ratio",
     "Share of the limit used in the current window (0 to 1)."),
    ("learned", "resource_learned_limit_tokens",
     "The limit learned from throttle signals (in force), per window."),
    ("configured", "resource_configured_limit_tokens",
     "Beside a learned limit: the configured (else the declared) one it learns under."),
)  # fmt: skip


def _resources(view: DaemonView, totals: Totals, waiting_all: int) -> Iterator[Metric]:
    """Per named resource: waiting requests, limit, window, remaining and utilisation."""
    cap = totals.resources
    for rid in view.resource_ids():  # resources not yet counted take the free names, if any
        if len(cap.kept) >= cap.cap:
            break
        cap.label(rid)
    families = {
        key: GaugeMetricFamily(PREFIX + name, help, labels=["resource"])
        for key, name, help in _RESOURCE_GAUGES
    }
    waiting_named = 0
    for rid in list(cap.kept):
        state = _state(view, rid)
        limit = state.get("rate_limit") if state is not None else None
        if isinstance(limit, dict):
            waiting_named += _add_resource(families, rid, limit)
    families["waiting"].add_metric([OTHER], float(max(0, waiting_all - waiting_named)))
    yield from families.values()


def _add_resource(families: dict[str, GaugeMetricFamily], rid: str, limit: dict[str, Any]) -> int:
    """One resource's samples from its `rate_limit` state; returns its waiting requests."""
    waiting = int(limit.get("waiting", 0))
    families["waiting"].add_metric([rid], float(waiting))
    total, remaining = int(limit["limit"]), int(limit["remaining"])
    families["limit"].add_metric([rid], float(total))
    families["window"].add_metric([rid], float(limit["window"]))
    families["remaining"].add_metric([rid], float(remaining))
    families["utilisation"].add_metric([rid], (total - remaining) / total if total else 0.0)
    learned = limit.get("learned")
    if isinstance(learned, dict):
        families["learned"].add_metric([rid], float(learned["limit"]))
        under = learned.get("configured") or learned.get("declared")
        if under:
            families["configured"].add_metric([rid], float(under))
    return waiting


def _state(view: DaemonView, resource_id: str) -> dict[str, Any] | None:
    try:
        reply = view.ask({"type": "resource_state", "resource_id": resource_id})
    except AskError:
        return None
    resources = reply.get("resources") or []
    return resources[0] if resources else None


def _usage(totals: Totals) -> Iterator[Metric]:
    labels = ["resource", "tool"]
    granted = CounterMetricFamily(
        PREFIX + "tokens_granted", "Rate-limit tokens granted.", labels=labels
    )
    refused = CounterMetricFamily(
        PREFIX + "requests_refused", "Token requests refused.", labels=labels
    )
    waited = CounterMetricFamily(
        PREFIX + "requests_waited", "Token requests that waited before their answer.", labels=labels
    )
    wait = CounterMetricFamily(
        PREFIX + "request_wait_seconds", "Time token requests spent waiting.", labels=labels
    )
    for (resource, tool), usage in sorted(totals.usage.items()):
        granted.add_metric([resource, tool], float(usage.granted))
        refused.add_metric([resource, tool], float(usage.refused))
        waited.add_metric([resource, tool], float(usage.waited))
        wait.add_metric([resource, tool], usage.wait_seconds)
    yield from (granted, refused, waited, wait)


def _executions(totals: Totals) -> Iterator[Metric]:
    runs = CounterMetricFamily(
        PREFIX + "executions",
        "Executions reported by rpr and patience (outcome: success or failure).",
        labels=["tool", "resource", "outcome"],
    )
    for (tool, resource, success), count in sorted(totals.executions.items()):
        runs.add_metric([tool, resource, "success" if success else "failure"], float(count))
    yield runs
    durations = HistogramMetricFamily(
        PREFIX + "execution_duration_seconds",
        "How long executions took.",
        labels=["tool", "resource"],
    )
    bounds = [*(_le(b) for b in DURATION_BUCKETS), "+Inf"]
    for (tool, resource), histogram in sorted(totals.durations.items()):
        counts = histogram.cumulative()
        durations.add_metric(
            [tool, resource],
            [(bound, float(count)) for bound, count in zip(bounds, counts, strict=True)],
            histogram.total,
        )
    yield durations


def _le(bound: float) -> str:
    return repr(float(bound))
