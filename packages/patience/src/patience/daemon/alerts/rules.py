"""The alert rules, as pure code: a snapshot of the daemon's state in, findings out (a rule
and resource whose condition holds now). Whether a finding becomes an alert, and when it
fires and resolves, is the book's (book.py).

Each finding says how long its condition must hold before the alert fires (`hold_for`:
`exhaustion_for` for a limit in use, else 0) and which tools and clients contributed.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple

from patience.daemon.alerts.settings import RuleSettings
from patience.daemon.alerts.snapshot import Event, Limited, Outcomes, Schedule, Snapshot
from patience.durations import format_duration

__all__ = ["COORDINATION_RESOURCE", "RULES", "Finding", "evaluate"]

RULES = ("exhaustion", "throttled", "degradation", "missed_schedule", "coordination")
COORDINATION_RESOURCE = "backend:redis"  # the resource named by a Redis outage's alert

SettingsFor = Callable[[str], RuleSettings]


class Finding(NamedTuple):
    rule: str
    resource: str
    summary: str
    tools: frozenset[str]
    clients: frozenset[str]
    hold_for: float = 0.0


def evaluate(snapshot: Snapshot, settings_for: SettingsFor) -> list[Finding]:
    """Every finding of every rule, in (rule, resource) order; resources whose settings say
    `enabled = false` have none."""
    found = [
        *_exhaustion(snapshot.limited, settings_for),
        *_throttled(snapshot, settings_for),
        *_degradation(snapshot, settings_for),
        *_missed_schedules(snapshot, settings_for),
        *_coordination(snapshot, settings_for),
    ]
    return sorted(
        (f for f in found if settings_for(f.resource).enabled),
        key=lambda f: (f.rule, f.resource),
    )


def _who(users: Mapping[str, str]) -> tuple[frozenset[str], frozenset[str]]:
    return frozenset(users.values()), frozenset(users)


def _exhaustion(limited: Iterable[Limited], settings_for: SettingsFor) -> Iterable[Finding]:
    for r in limited:
        s = settings_for(r.id)
        tools, clients = _who(r.users)
        utilisation = r.used / r.limit if r.limit else 0.0
        if r.waiting and r.oldest_wait >= s.exhaustion_wait:
            summary = (
                f"{r.waiting} requests waiting, the oldest for {format_duration(r.oldest_wait)}"
                f" (more than {format_duration(s.exhaustion_wait)})"
            )
            yield Finding("exhaustion", r.id, summary, tools, clients)
        elif utilisation >= s.exhaustion_utilisation:
            summary = (
                f"{utilisation:.0%} of its limit ({r.limit} per {format_duration(r.window)})"
                f" in use, at least {s.exhaustion_utilisation:.0%}"
                f" for {format_duration(s.exhaustion_for)}"
            )
            yield Finding("exhaustion", r.id, summary, tools, clients, s.exhaustion_for)


def _recent(
    events: Iterable[Event], now: float, window_of: Callable[[str], float]
) -> dict[str, list[Event]]:
    """The events within each resource's window, by resource."""
    by_resource: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        if now - window_of(event.resource) <= event.at <= now:
            by_resource[event.resource].append(event)
    return by_resource


def _parties(events: Iterable[Event]) -> tuple[frozenset[str], frozenset[str]]:
    events = list(events)
    return frozenset(e.tool for e in events), frozenset(e.client for e in events)


def _throttled(snapshot: Snapshot, settings_for: SettingsFor) -> Iterable[Finding]:
    recent = _recent(
        snapshot.throttles, snapshot.now, lambda rid: settings_for(rid).throttle_window
    )
    for resource, events in sorted(recent.items()):
        s = settings_for(resource)
        if len(events) >= s.throttle_count:
            summary = (
                f"{len(events)} throttle signals in the last {format_duration(s.throttle_window)}"
                f" (at least {s.throttle_count})"
            )
            yield Finding("throttled", resource, summary, *_parties(events))


def _degradation(snapshot: Snapshot, settings_for: SettingsFor) -> Iterable[Finding]:
    span = format_duration(snapshot.degradation_window)
    for o in snapshot.outcomes:
        s = settings_for(o.resource)
        summary = _degraded(o, s, span)
        if summary is not None:
            yield Finding("degradation", o.resource, summary, *_who(o.users))


def _degraded(o: Outcomes, s: RuleSettings, span: str) -> str | None:
    """What is wrong with a resource's recent runs, or None."""
    if o.runs < s.degradation_min_runs:
        return None
    rate = o.successes / o.runs
    baseline = o.base_runs >= s.degradation_min_runs
    base_rate = o.base_successes / o.base_runs if o.base_runs else 0.0
    if rate < s.success_rate_min:
        return f"success rate {rate:.0%} over the last {span}, below {s.success_rate_min:.0%}"
    if baseline and base_rate - rate >= s.success_rate_drop:
        return (
            f"success rate {rate:.0%} over the last {span}, {100 * (base_rate - rate):.0f}"
            f" points below the previous 24h ({base_rate:.0%})"
        )
    if baseline and o.p95 is not None and o.base_p95 and o.p95 >= s.latency_factor * o.base_p95:
        return (
            f"p95 duration {format_duration(o.p95)} over the last {span},"
            f" {o.p95 / o.base_p95:.1f}x the previous 24h ({format_duration(o.base_p95)})"
        )
    return None


def _missed_schedules(snapshot: Snapshot, settings_for: SettingsFor) -> Iterable[Finding]:
    late: dict[str, list[tuple[Schedule, str]]] = defaultdict(list)
    now = snapshot.now
    for sc in snapshot.schedules:
        grace = settings_for(sc.resource).missed_schedule_grace
        silent = now - sc.last_start
        if silent <= sc.period + grace:
            continue
        why = (
            f"{sc.client} started no run for {format_duration(silent)}"
            f" (every {format_duration(sc.period)}, grace {format_duration(grace)})"
        )
        if sc.gone_since is not None:
            why += " and has had no connection since " + _clock(sc.gone_since)
        late[sc.resource].append((sc, why))
    for resource, entries in sorted(late.items()):
        summary = "; ".join(why for _, why in entries)
        tools = frozenset(sc.tool for sc, _ in entries)
        clients = frozenset(sc.client for sc, _ in entries)
        yield Finding("missed_schedule", resource, summary, tools, clients)


def _coordination(snapshot: Snapshot, settings_for: SettingsFor) -> Iterable[Finding]:
    if snapshot.redis_down_since is not None:
        summary = (
            f"Redis at {snapshot.redis_url} unreachable since {_clock(snapshot.redis_down_since)}:"
            " limits are enforced by this daemon alone"
        )
        yield Finding("coordination", COORDINATION_RESOURCE, summary, frozenset(), frozenset())
    recent = _recent(
        snapshot.fallbacks, snapshot.now, lambda rid: settings_for(rid).fallback_window
    )
    for resource, events in sorted(recent.items()):
        window = format_duration(settings_for(resource).fallback_window)
        tools, clients = _parties(events)
        summary = (
            f"{len(clients)} clients ran on their fallback limit in the last {window}"
            " (the daemon was unreachable to them)"
        )
        yield Finding("coordination", resource, summary, tools, clients)


def _clock(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
