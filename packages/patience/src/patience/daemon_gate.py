"""DaemonGate: LocalGate's `wait_turn()`, with each token taken from patience-daemon.

Part of the coordination (patience.coordination). While the daemon is away the gate keeps
to the fail mode's limit here (docs/protocol.md, "Restarts and outages"): a start is never
lost or doubled, since each token comes from exactly one of the daemon or the local limiter.
"""

from __future__ import annotations

import math
import time
from collections import deque

from patience import process
from patience.daemon.client import DaemonError, DaemonUnavailable
from patience.grant_ahead import Ahead

__all__ = ["CHUNK", "LOCAL_SLICE", "MAX_REPORTED", "DaemonGate"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from patience.daemon.client import DaemonClient, Grant
    from patience.daemon_link import Link
    from patience.ratelimit.algorithms import Limiter
    from patience.settings import Limit

CHUNK = 0.5  # seconds the daemon may queue one acquire: the longest a Ctrl-C waits
LOCAL_SLICE = 0.25  # a wait for a local token looks for the daemon this often
MAX_REPORTED = 10_000  # grant times kept for a report (protocol.MAX_REPORTED)


class DaemonGate:
    """`wait_turn()` as LocalGate's, with the token taken from the daemon.

    `declared` (this tool's own Limit) is sent with each request: the daemon
    applies it when its configuration has no limit for the resource. `local` is the same
    limit kept in this process, fed with every grant; with `learn`, a gate without one adopts
    the limit the daemon reports. `failure` says why the gate closed (fallback "closed", or
    the daemon refused us).

    While the daemon is away (`fallback`): "share" keeps to the share of the limit the daemon
    last gave this client (the limit divided among the clients using it, so that together
    they stay within it), "full" to the whole limit, "closed" stops. Either counts this
    client's own grants of the last window, so the switch hands out no fresh burst, and holds
    for one window more once the daemon is back: a new daemon cannot know the grants of the
    clients that have not come back yet. Back at the daemon, the gate first reports its grants
    of the last window (`report_grants`), so that a daemon that restarted or replaced a
    crashed one counts them.

    `notice`, when given, is told once per wait the daemon expects to last (its predictive
    wait: "waiting ~3.2s for api (3 ahead)")."""

    def __init__(
        self,
        link: Link,
        client: DaemonClient,
        *,
        declared: Limit | None,
        local: Limiter | None,
        learn: bool,
        fallback: str,
        runs: str,
        notice: Callable[[str], None] | None = None,
        ahead: int | None = 0,
    ) -> None:
        self.link = link
        self.client = client
        self.declared = declared
        self.local = local
        self.learn = learn and local is None
        self.fallback = fallback
        self.fail_closed = fallback == "closed"
        self.runs = runs  # "runs" or "attempts", for the fail-closed message
        self.failure: str | None = None
        self.share: int | None = None  # the daemon's last word on our share
        self.recent: deque[float] = deque(maxlen=MAX_REPORTED)  # our grants, monotonic
        self.outage: Limiter | None = None  # what we keep to while the daemon is away ...
        self.outage_ends = math.inf  # ... and until then, once it is back
        self.reported = 0  # the link epoch whose report is done
        self.notice = notice
        self.told = False  # this wait's predictive wait was said
        self.ahead = (
            None if ahead == 0 or declared is not None else Ahead(client, link.resource_id, ahead)
        )
        self._describe_fallback()

    def wait_turn(self, until: float | None = None) -> bool:
        """Block until this start may go (True), or the tool is interrupted, the gate has
        closed (False; `failure` says which) or no token comes before `until`."""
        if self.failure is not None:
            return False
        while process.interrupted() is None:
            if self.ahead is not None and self.ahead.pending and self._ahead_turn():
                return True
            if self.link.up is None:
                self.link.first_contact(self.client)
            if not self.link.up and not self.fail_closed:
                turn = self._local_turn(until)
                if turn is not None:
                    return turn
                continue  # the daemon is back
            granted = self._ask(until)
            if granted is not None:
                return granted
            if self.fail_closed:
                self.failure = (
                    f"patience-daemon unavailable: {self.link.reason}; the fail mode is"
                    f" closed, so no more {self.runs} start (start it with: patience-daemon"
                    f" --socket {self.link.manager.socket_path}, or use --daemon-fail-mode share)"
                )
                return False
        return False

    def _ask(self, until: float | None) -> bool | None:
        """A token from the daemon: True granted, False interrupted or refused, None when
        the daemon is gone. The daemon queues each request up to CHUNK; a longer wait is
        slept here and asked again, so that a Ctrl-C is never kept waiting long."""
        try:
            self._report()
            now = time.monotonic()
            free_at = self._free_at(now)  # no need to ask before
            self._tell(free_at - now, None)
            if (until is not None and free_at > until) or not process.sleep_until(free_at):
                return False
            while True:
                grant = self.client.acquire(
                    self.link.resource_id,
                    max_wait=CHUNK,
                    limit=self.declared,
                )
                if grant.share is not None and grant.share != self.share:
                    self.share = grant.share
                    self._describe_fallback()
                if grant.granted:
                    self.told = False
                    self._granted(grant)
                    return True
                if grant.estimated_wait is not None:
                    self._tell(grant.estimated_wait, grant.ahead or 0)
                now = time.monotonic()
                if until is not None and now + grant.retry_after > until:
                    return False
                pause = grant.retry_after - CHUNK / 2
                if not process.sleep_until(now + max(pause, 0.0)):
                    return False
        except DaemonUnavailable as exc:
            self.link.lost(str(exc))
            return None
        except DaemonError as exc:
            self.failure = f"patience-daemon refused {self.link.resource_id}: {exc}"
            return False

    def _ahead_turn(self) -> bool:
        """Whether this start goes on a token asked for ahead (patience.grant_ahead)."""
        ahead = self.ahead
        assert ahead is not None
        if not (self.link.up and self.reported == self.link.epoch):
            ahead.drop()  # asked of a daemon since lost, or before it came back
            return False
        try:
            if not ahead.take(time.monotonic()):
                return False
        except DaemonUnavailable as exc:
            self.link.lost(str(exc))
            return False
        except DaemonError:
            return False  # asked again the usual way, which says what is wrong
        self._record(time.monotonic(), unlimited=True, own=False)
        return True

    def throttled(self) -> None:
        """A run met a throttle signal: tokens asked for ahead are not used."""
        if self.ahead is not None:
            self.ahead.throttled()

    def settle(self) -> None:
        """At the end: give up the tokens asked for ahead and not used, so that the
        connection can carry other requests (the farewell)."""
        if self.ahead is not None:
            self.ahead.drop()

    def _tell(self, wait: float, ahead: int | None) -> None:
        """Say once per wait how long it will last (the daemon's estimate, and how many
        requests are queued ahead; or the limit kept here)."""
        if self.notice is None or self.told or wait < CHUNK:
            return
        self.told = True
        queued = "" if ahead is None else f" ({ahead} ahead)"
        self.notice(f"waiting ~{wait:.1f}s for {self.link.resource_id}{queued}")

    def _report(self) -> None:
        """Once after each contact: our grants of the last window (made here while the daemon
        was away, or given by a daemon that has since stopped), so that the daemon counts them.
        A daemon that does not know the message cannot count them; we go on."""
        if self.reported == self.link.epoch:
            return
        self.reported = self.link.epoch
        if self.outage is not None:
            self.outage_ends = time.monotonic() + self.outage.window
        if self.local is None:
            return
        times = self._recent(self.local.window, MAX_REPORTED)
        if not times:
            return
        offset = time.time() - time.monotonic()
        try:
            self.client.report_grants(
                self.link.resource_id, [at + offset for at in times], self.declared
            )
        except DaemonError:
            pass

    def _local_turn(self, until: float | None) -> bool | None:
        """A start while the daemon is away: True under the fallback limit, False when
        interrupted or no token comes before `until`, None as soon as the daemon is back. The
        wait looks for the daemon every LOCAL_SLICE."""
        limiter = self._outage_limiter()
        while True:
            if self.link.try_return(self.client):
                return None
            now = time.monotonic()
            if limiter is None:  # no limit known here
                self._record(now)
                return True
            if self.share == 0 and self.fallback == "share":  # only the daemon lets us go
                if until is not None and now >= until:
                    return False
                wake = now + LOCAL_SLICE if until is None else min(until, now + LOCAL_SLICE)
            else:
                free_at = limiter.available_at(now)
                if free_at <= now:
                    self._record(now)
                    return True
                if until is not None and free_at > until:
                    return False
                wake = min(free_at, now + LOCAL_SLICE)
            if not process.sleep_until(wake):
                return False

    def _outage_limiter(self) -> Limiter | None:
        """The limit kept while the daemon is away, made at an outage's first start: our
        share (or the whole limit: fallback "full", or no share known yet), holding our own
        grants of the last window. None when no limit is known here."""
        local = self.local
        self.outage_ends = math.inf
        if self.outage is None and local is not None:
            from patience.ratelimit.algorithms import make_limiter

            share = local.limit if self.fallback == "full" or self.share is None else self.share
            self.outage = make_limiter(local.algorithm, max(share, 1), local.window)
            for at in self._recent(local.window, max(share, 1)):
                self.outage.acquire(at)
        return self.outage

    def _free_at(self, now: float) -> float:
        """When the limits kept here let the next start go: the local limit, and the outage's
        for one window after the daemon came back (ending then)."""
        free_at = self.local.available_at(now) if self.local is not None else 0.0
        if self.outage is not None and self.link.up:
            if now >= self.outage_ends or self.share == 0:
                self.outage = None
            else:
                free_at = max(free_at, self.outage.available_at(now))
        return free_at

    def _granted(self, grant: Grant) -> None:
        now = time.monotonic()
        known = grant.limit
        if (
            self.learn
            and known is not None
            and (self.local is None or self.local.as_limit() != known)
        ):
            from patience.ratelimit.algorithms import limiter_for

            self.local = limiter_for(known)
            self._describe_fallback()
        self._record(now, unlimited=known is None)

    def _record(self, now: float, *, unlimited: bool = False, own: bool = True) -> None:
        """One start of ours, granted by the daemon or here: the limits kept here and the next
        report count it, and the tokens asked ahead (`unlimited`: the daemon said the resource
        has no limit; `own`: the start did not go on a token asked ahead)."""
        self.recent.append(now)
        if self.local is not None:
            self.local.acquire(now)
        if self.outage is not None:
            self.outage.acquire(now)
        if self.ahead is not None:
            self.ahead.started(unlimited, now, own=own)

    def _recent(self, window: float, most: int) -> list[float]:
        """Our grants of the last `window`, the newest `most` of them, oldest first."""
        since = time.monotonic() - window
        times = [at for at in self.recent if at > since]
        return times[-most:]

    def _describe_fallback(self) -> None:
        """What the warning of a loss will say we do meanwhile."""
        local, resource = self.local, self.link.resource_id
        if local is None:
            return
        if self.fallback == "full" or self.share is None:
            self.link.fallback = f"limiting {resource} to {local.describe()} locally"
        elif self.share == 0:
            self.link.fallback = (
                f"waiting to run {resource} (its share of {local.describe()} is none:"
                " more clients than the limit)"
            )
        else:
            self.link.fallback = (
                f"limiting {resource} to its share, {self.share} of {local.describe()}, locally"
            )
