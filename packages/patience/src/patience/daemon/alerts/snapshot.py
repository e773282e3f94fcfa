"""What the rules look at: the daemon's state at one moment, as plain values (gather.py makes
it from the live daemon; tests write it by hand). Times are Unix seconds; `users` maps a
client id to its tool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

__all__ = ["Event", "Limited", "Outcomes", "Schedule", "Snapshot"]


class Limited(NamedTuple):
    """A resource with a limit in force: tokens used of `limit` in the current window, the
    requests waiting and how long the oldest of them has waited (0 when none)."""

    id: str
    limit: int
    window: float
    used: int
    waiting: int
    oldest_wait: float
    users: Mapping[str, str]


class Schedule(NamedTuple):
    """A registered rpr schedule: one run due every `period` seconds; `last_start` is the
    latest start the daemon saw (or when it first saw the schedule); `gone_since` is when its
    client lost its last connection (None: connected)."""

    resource: str
    client: str
    tool: str
    period: float
    last_start: float
    gone_since: float | None


class Outcomes(NamedTuple):
    """A resource's runs over the recent window and over the 24 hours before it (the
    baseline), from the rollups; p95s in seconds, None without runs."""

    resource: str
    runs: int
    successes: int
    p95: float | None
    base_runs: int
    base_successes: int
    base_p95: float | None
    users: Mapping[str, str]


class Event(NamedTuple):
    """Something a client told the daemon about a resource at a time: throttle feedback, or
    a report of grants made on its fallback."""

    at: float
    resource: str
    tool: str
    client: str


class Snapshot(NamedTuple):
    now: float
    limited: Sequence[Limited] = ()
    schedules: Sequence[Schedule] = ()
    outcomes: Sequence[Outcomes] = ()
    throttles: Sequence[Event] = ()
    fallbacks: Sequence[Event] = ()
    redis_url: str | None = None
    redis_down_since: float | None = None  # Unix time; None while it answers (or no Redis)
    degradation_window: float = 900.0
