"""The live daemon's state as a Snapshot for the rules, taken about once a second on the
daemon's loop: limits in use and waiting requests from the coordinator, registered schedules
(followed from one snapshot to the next: schedules.py), run outcomes from the rollups
(refreshed every OUTCOMES_EVERY seconds, so a second's evaluation reads no database), the
events clients reported (events.py) and the Redis backend's state."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any, Protocol

from patience.daemon.alerts.events import EventLog
from patience.daemon.alerts.schedules import ScheduleWatch
from patience.daemon.alerts.snapshot import Limited, Outcomes, Snapshot
from patience.daemon.registry import Client
from patience.daemon.resources import Resource
from patience.daemon.storage import MetricsStore

__all__ = ["BASELINE", "OUTCOMES_EVERY", "Gatherer", "Tracked"]

log = logging.getLogger("patience.daemon")

OUTCOMES_EVERY = 10.0  # seconds between two reads of the rollups
BASELINE = 86400.0  # the span before the recent window that recent outcomes are compared with


class Tracked(Protocol):
    """What alerts read of the coordinator (patience.daemon.coordinator.Coordinator)."""

    @property
    def clients(self) -> Mapping[str, Client]: ...

    @property
    def resources(self) -> Mapping[str, Resource]: ...


class Backend(Protocol):
    """The Redis admission's state (patience.daemon.redis_admission.RedisAdmission)."""

    url: str
    unreachable_since: float | None


class Gatherer:
    def __init__(self, throttles: EventLog, fallbacks: EventLog) -> None:
        self.throttles = throttles
        self.fallbacks = fallbacks
        self.schedules = ScheduleWatch()
        self._outcomes: list[Outcomes] = []
        self._outcomes_at = -math.inf
        self._query_failed = False

    def snapshot(
        self,
        coordinator: Tracked,
        store: MetricsStore | None,
        redis: Backend | None,
        now: float,
        mono: float,
        window: float,
    ) -> Snapshot:
        """`now` Unix seconds, `mono` the daemon's monotonic clock; `window` the recent span
        of the outcomes ([alerting] degradation_window)."""
        clients = coordinator.clients
        users = _users(clients)
        if store is not None and now - self._outcomes_at >= OUTCOMES_EVERY:
            self._outcomes_at = now
            self._outcomes = self._read_outcomes(store, now, window, users)
        return Snapshot(
            now=now,
            limited=_limited(coordinator.resources, users, mono),
            schedules=self.schedules.observe(clients, now, mono),
            outcomes=self._outcomes,
            throttles=self.throttles.recent(now),
            fallbacks=self.fallbacks.recent(now),
            redis_url=redis.url if redis is not None else None,
            redis_down_since=redis.unreachable_since if redis is not None else None,
            degradation_window=window,
        )

    def _read_outcomes(
        self, store: MetricsStore, now: float, window: float, users: Mapping[str, dict[str, str]]
    ) -> list[Outcomes]:
        """Per resource with runs in the window: its runs, successes and p95 there and over
        the BASELINE before it (hour rollups)."""
        try:
            recent = _totals(store.timeseries(None, None, now - window, now, "1m", "resource",
                                              False, now))  # fmt: skip
            base = _totals(store.timeseries(None, None, now - window - BASELINE, now - window,
                                            "1h", "resource", False, now))  # fmt: skip
        except Exception as exc:  # QueryError or a damaged store: the other rules go on
            if not self._query_failed:
                log.warning("alerts: cannot read the run outcomes (%s); degradation unchecked", exc)
            self._query_failed = True
            return []
        self._query_failed = False
        outcomes = []
        for rid, total in recent.items():
            before = base.get(rid, {})
            outcomes.append(
                Outcomes(
                    rid,
                    int(total.get("runs") or 0),
                    int(total.get("successes") or 0),
                    _float(total.get("duration_p95")),
                    int(before.get("runs") or 0),
                    int(before.get("successes") or 0),
                    _float(before.get("duration_p95")),
                    users.get(rid, {}),
                )
            )
        return outcomes


def _users(clients: Mapping[str, Client]) -> dict[str, dict[str, str]]:
    """Per resource, the clients that used it and their tools."""
    users: dict[str, dict[str, str]] = {}
    for client in clients.values():
        for rid in client.uses:
            users.setdefault(rid, {})[client.id] = client.tool
    return users


def _limited(
    resources: Mapping[str, Resource], users: Mapping[str, dict[str, str]], mono: float
) -> list[Limited]:
    limited = []
    for resource in resources.values():
        limiter = resource.limiter
        if limiter is None:
            continue
        heads = [queue[0].enqueued for queue in resource.queue.values() if queue]
        waiting = sum(len(queue) for queue in resource.queue.values())
        limited.append(
            Limited(
                resource.id,
                limiter.limit,
                limiter.window,
                limiter.limit - limiter.remaining(mono),
                waiting,
                mono - min(heads) if heads else 0.0,
                users.get(resource.id, {}),
            )
        )
    return limited


def _totals(reply: dict[str, object]) -> dict[str, dict[str, Any]]:
    series = reply["series"]
    assert isinstance(series, list)
    return {str(s["resource_id"]): s["total"] for s in series}


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
