"""The fallback share: while Redis is unreachable, each daemon enforces its share of a limit.

Without Redis every daemon decides alone. Were each to allow the whole limit, N daemons would
let N times the limit pass. So at each heartbeat the fleet registry (patience.daemon.fleet)
counts, per resource this daemon tracks, the daemons active on it (a client asked for it or
was granted tokens in its last window), this daemon included even when it was not; and when
Redis becomes unreachable (Coordinator.set_remote) every resource's limit in force is divided
by that count (at least 1 token each). The local limiter is made again from this daemon's
recent grants (resources.Resource.apply_spec), so a daemon that already used its share waits.
When Redis is back, the whole limit is decided in Redis again. A resource first tracked during
the outage gets its share at the next heartbeat (the counts of the last view it had).

Times are seconds on the daemon's monotonic clock; nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from patience.daemon.fleet_records import ResourceUse
from patience.daemon.resources import Resource

__all__ = ["FleetShare", "divisors", "resource_uses"]


def resource_uses(resources: Mapping[str, Resource], now: float) -> list[ResourceUse]:
    """What this daemon did with each limited resource in its last window (the grants it
    counts there and whether anyone asked)."""
    uses = []
    for resource in resources.values():
        limiter = resource.limiter
        if limiter is None:
            continue
        since = now - limiter.window
        resource.trim(now, limiter.window)
        granted = sum(resource.held.values())
        active = (
            granted > 0 or bool(resource.queue) or any(at > since for at in resource.asked.values())
        )
        uses.append(ResourceUse(resource.id, granted, limiter.limit, limiter.window, active))
    return uses


def divisors(counts: Mapping[str, int], active: set[str]) -> dict[str, int]:
    """Per resource, the daemons among which its limit is divided during an outage: those
    Redis counted active on it, plus this daemon when it was not among them; at least 1."""
    return {rid: max(1, count + (rid not in active)) for rid, count in counts.items()}


class FleetShare:
    """The divisors of the last fleet view (`daemons`, set by the fleet registry), applied to
    the resources while Redis is unreachable."""

    def __init__(self, resources: Mapping[str, Resource]) -> None:
        self._resources = resources
        self.daemons: dict[str, int] = {}
        self.outage = False

    def apply(self, remote: bool) -> None:
        """Redis reachable (`remote`): every resource's whole limit; else the shares. Waiters
        held back by a share are looked at again at once when the whole limit returns (any
        past moment will do as their ready time: the admission serves what is ready by now)."""
        self.outage = not remote
        for resource in self._resources.values():
            wanted = 1 if remote else self.daemons.get(resource.id, 1)
            if resource.fleet_daemons != wanted:
                grows = wanted < resource.fleet_daemons
                resource.fleet_daemons = wanted
                resource.apply_spec()
                if grows and resource.queue:
                    resource.ready_at = min(resource.ready_at, resource.last_activity)
