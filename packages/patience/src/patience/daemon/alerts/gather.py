"""The live daemon's state as a Snapshot for the rules, taken about once a second on the
daemon's loop: limits in use and waiting requests from the coordinator, registered schedules
(followed from one snapshot to the next: schedules.py), run outcomes from the rollups
(refreshed every OUTCOMES_EVERY seconds, so a second's evaluation reads no database), the
events clients reported (events.py) and the Redis backend's state."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from patience.daemon.alerts.events import EventLog
from patience.daemon.alerts.schedules import ScheduleWatch
from patience.daemon.alerts.snapshot import Limited, Outcomes, Snapshot
from patience.daemon.registry import Client
from patience.daemon.resources import Resource
from patience.daemon.storage import MetricsStore

__all__ = ["BASELINE", "OUTCOMES_EVERY", "SWEEP", "WATCHED_MAX", "Gatherer", "Tracked"]

log = logging.getLogger("patience.daemon")

OUTCOMES_EVERY = 10.0  # seconds between two reads of the rollups
WATCHED_MAX = 2_000  # resources near their limit (or with waiters) looked at every second
SWEEP = 1_000  # other tracked resources looked at per snapshot, in turn
BASELINE = 86400.0  # the span before the recent window that recent outcomes are compared with


class Tracked(Protocol):
    """What alerts read of the coordinator (patience.daemon.coordinator.Coordinator)."""

    @property
    def clients(self) -> Mapping[str, Client]: ...

    @property
    def resources(self) -> Mapping[str, Resource]: ...

    def take_touched(self) -> set[str]: ...

    def users_of(self, resource_id: str) -> dict[str, str]: ...


class Backend(Protocol):
    """The Redis admission's state (patience.daemon.redis_admission.RedisAdmission)."""

    url: str
    unreachable_since: float | None


class Gatherer:
    """A snapshot costs what is in use, not what is tracked: each second it looks at the
    resources asked for tokens since the last one, those it found near their limit (at least
    `near(resource id)` of it in use) or with waiters, and SWEEP others in turn (a limit that
    shrank without a grant is seen within a sweep)."""

    def __init__(
        self, throttles: EventLog, fallbacks: EventLog, near: Callable[[str], float]
    ) -> None:
        self.throttles = throttles
        self.fallbacks = fallbacks
        self.near = near
        self._watched: set[str] = set()
        self._order: list[str] = []  # this sweep's resource ids, taken when the last ended
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
        if store is not None and now - self._outcomes_at >= OUTCOMES_EVERY:
            self._outcomes_at = now
            self._outcomes = self._read_outcomes(store, now, window, coordinator.users_of)
        return Snapshot(
            now=now,
            limited=self._limited(coordinator, mono),
            schedules=self.schedules.observe(clients, now, mono),
            outcomes=self._outcomes,
            throttles=self.throttles.recent(now),
            fallbacks=self.fallbacks.recent(now),
            redis_url=redis.url if redis is not None else None,
            redis_down_since=redis.unreachable_since if redis is not None else None,
            degradation_window=window,
        )

    def _limited(self, coordinator: Tracked, mono: float) -> list[Limited]:
        resources = coordinator.resources
        if not self._order:
            self._order = list(resources)
        swept, self._order = self._order[:SWEEP], self._order[SWEEP:]
        looked = self._watched | coordinator.take_touched() | set(swept)
        self._watched = set()
        limited = []
        for rid in looked:
            resource = resources.get(rid)
            if resource is None or resource.limiter is None:
                continue
            found = _state(resource, coordinator.users_of, mono)
            limited.append(found)
            near = found.used >= found.limit * self.near(rid)
            if (found.waiting or near) and len(self._watched) < WATCHED_MAX:
                self._watched.add(rid)
        return limited

    def _read_outcomes(
        self,
        store: MetricsStore,
        now: float,
        window: float,
        users: Callable[[str], dict[str, str]],
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
                    users(rid),
                )
            )
        return outcomes


def _state(resource: Resource, users: Callable[[str], dict[str, str]], mono: float) -> Limited:
    limiter = resource.limiter
    assert limiter is not None
    heads = [queue[0].enqueued for queue in resource.queue.values() if queue]
    return Limited(
        resource.id,
        limiter.limit,
        limiter.window,
        limiter.limit - limiter.remaining(mono),
        sum(len(queue) for queue in resource.queue.values()),
        mono - min(heads) if heads else 0.0,
        users(resource.id),
    )


def _totals(reply: dict[str, object]) -> dict[str, dict[str, Any]]:
    series = reply["series"]
    assert isinstance(series, list)
    return {str(s["resource_id"]): s["total"] for s in series}


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None
