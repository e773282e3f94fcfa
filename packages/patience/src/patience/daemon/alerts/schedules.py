"""Following registered rpr schedules from one snapshot to the next, for the missed-schedule
rule (as healthchecks.io follows cron jobs: a run is due every period; silence past the period
and a grace time is an alert).

The daemon sees a run start as a token granted or a run recorded for the client and resource
(their counters move between two snapshots). A schedule is followed from its registration
until its client unregisters it (`unregister_schedule`, sent by rpr when it ends on purpose)
or it ends (a count or duration schedule past its end). A client that vanishes without
unregistering (killed, host gone) is not forgotten with it: its schedule stays followed, so
its silence fires the alert, until another client of the same resource starts a run after
it vanished (the job was restarted) or VANISHED_KEEP has passed.
"""

from __future__ import annotations

from collections.abc import Mapping

from patience.daemon.alerts.snapshot import Schedule
from patience.daemon.registry import Client, Use

__all__ = ["VANISHED_KEEP", "ScheduleWatch"]

VANISHED_KEEP = 86400.0  # seconds a vanished client's schedule stays followed at most


class _Followed:
    __slots__ = ("activity", "client", "gone_since", "last_start", "period", "resource", "tool")

    def __init__(self, client: Client, resource: str, period: float, now: float) -> None:
        self.client = client.id
        self.tool = client.tool
        self.resource = resource
        self.period = period
        self.activity: tuple[object, ...] = ()
        self.last_start = now  # until a run is seen: since the daemon first saw the schedule
        self.gone_since: float | None = None

    def see(self, client: Client, use: Use, now: float) -> None:
        activity = (use.tokens, use.executions, use.last_execution)
        if self.activity and activity != self.activity:
            self.last_start = now
        self.activity = activity
        connected = client.connections > 0 or client.waiting > 0
        self.gone_since = None if connected else (self.gone_since or now)


class ScheduleWatch:
    def __init__(self) -> None:
        self.followed: dict[tuple[str, str], _Followed] = {}

    def unregister(self, client_id: str, resource: str) -> None:
        self.followed.pop((client_id, resource), None)

    def observe(self, clients: Mapping[str, Client], now: float, mono: float) -> list[Schedule]:
        """The schedules followed after this look at the clients (`now` Unix, `mono` the
        daemon's monotonic clock, which schedule ends are on)."""
        seen: set[tuple[str, str]] = set()
        for client in clients.values():
            for rid, use in client.uses.items():
                key = (client.id, rid)
                schedule = use.schedule
                if schedule is not None and use.schedule_ends < mono:
                    self.followed.pop(key, None)  # ended as planned
                    continue
                followed = self.followed.get(key)
                if schedule is not None and schedule.interval > 0:
                    if followed is None:
                        followed = self.followed[key] = _Followed(client, rid, 0.0, now)
                    followed.period = schedule.interval
                if followed is not None:  # also a client back under its id, not re-registered
                    followed.see(client, use, now)
                    seen.add(key)
        for key, followed in list(self.followed.items()):
            if key not in seen:
                followed.gone_since = followed.gone_since or now
                if now - followed.last_start > VANISHED_KEEP or self._replaced(followed):
                    del self.followed[key]
        return [
            Schedule(f.resource, f.client, f.tool, f.period, f.last_start, f.gone_since)
            for f in self.followed.values()
        ]

    def _replaced(self, gone: _Followed) -> bool:
        """Another client of the resource started a run after this one vanished."""
        assert gone.gone_since is not None
        return any(
            f.resource == gone.resource and f.gone_since is None and f.last_start > gone.gone_since
            for f in self.followed.values()
        )
