"""Protocol 1.0 bookings of every resource: a Go client's plan decided and booked, its
registered attempts, and the caps on what is held (patience.daemon.bookings decides one plan).

The limit in force is the configured one, else the strictest declared, as for protocol 2.0: a
Go client declares its --rate with each request. Times are Unix seconds (what the Go client
sends), except `now`, the daemon's monotonic clock for the client and resource bookkeeping.
"""

from __future__ import annotations

from collections.abc import Sequence

from patience.daemon.bookings import Answer, Bookings, decide
from patience.daemon.errors import CoordinatorError
from patience.daemon.protocol import (
    MAX_V1_ENTRIES_PER_RESOURCE,
    RegisteredRequest,
    ScheduleRequest,
)
from patience.daemon.registry import Client
from patience.daemon.resources import LimitSpec, Resource, Resources
from patience.daemon.usage import Usage
from patience.ratelimit.algorithms import DEFAULT_ALGORITHM

__all__ = ["MAX_BOOKED", "Ledger"]

MAX_BOOKED = 1_000_000  # protocol 1.0 booked attempts kept, all resources together


class Ledger:
    def __init__(self, resources: Resources, usage: Usage) -> None:
        self._resources = resources
        self._usage = usage
        self._total = 0  # bookings held, all resources together

    def schedule(
        self, client: Client, request: ScheduleRequest, now: float, wall_now: float
    ) -> Answer:
        """Decide a Go client's plan and book it (see patience.daemon.bookings)."""
        if not request.retry_offsets:  # the Go CLI's probe: nothing to book, nothing to track
            window = request.window_ms / 1000
            return Answer(True, float(request.request_time), [], False, request.rate_limit, window)
        client.last_seen = now
        resource = self._resources.get(request.resource_id, now, checked=False)
        resource.last_activity = now
        spec = LimitSpec.declared(
            request.rate_limit, request.window_ms / 1000, DEFAULT_ALGORITHM, client.id
        )
        self._resources.declare_spec(client.id, resource, spec, now)
        assert resource.spec is not None
        limit, window = resource.spec.limit.count, resource.spec.limit.window
        bookings = self.prune(resource, wall_now)
        self._check_room(resource, len(request.retry_offsets), wall_now)
        answer = decide(
            bookings.times(), request.request_time, request.retry_offsets, limit, window, wall_now
        )
        self._book(resource, answer.times, [at + window for at in answer.times])
        if not answer.fits:
            bookings.sleep_until(answer.start)
        client.booking = (resource.id, len(answer.times))
        client.use(resource.id).tokens += len(answer.times)
        resource.tokens += len(answer.times)
        waited = answer.start - max(float(request.request_time), wall_now)
        self._usage.count(
            resource.id,
            client.tool,
            granted=len(answer.times),
            denied=int(not answer.fits),
            waited=waited,
        )
        return answer

    def register(
        self, client: Client, requests: Sequence[RegisteredRequest], now: float, wall_now: float
    ) -> None:
        """Register attempts. Those that follow this client's own plan confirm its booking (the
        Go client registers what it was answered for, with its original request time); the
        others are booked as sent, each counting until its expiry."""
        client.last_seen = now
        resource_id, confirming = client.booking or ("", 0)
        client.booking = None
        by_resource: dict[str, list[RegisteredRequest]] = {}
        for entry in requests:
            if entry.resource_id == resource_id and confirming:
                confirming -= 1
            elif entry.expires_at > wall_now:
                by_resource.setdefault(entry.resource_id, []).append(entry)
        for rid, entries in by_resource.items():
            resource = self._resources.get(rid, now, checked=False)
            resource.last_activity = now
            self.prune(resource, wall_now)
            self._check_room(resource, len(entries), wall_now)
            self._book(
                resource,
                [float(e.scheduled_at) for e in entries],
                [float(e.expires_at) for e in entries],
            )

    def prune(self, resource: Resource, wall_now: float) -> Bookings:
        """The resource's bookings without those expired."""
        before = len(resource.bookings)
        resource.bookings.prune(wall_now)
        self._total -= before - len(resource.bookings)
        return resource.bookings

    def sleeping(self, wall_now: float) -> int:
        """Clients refused and asleep until their booked slot."""
        return sum(self.prune(r, wall_now).sleeping() for r in self._resources.by_id.values())

    def _check_room(self, resource: Resource, adding: int, wall_now: float) -> None:
        if len(resource.bookings) + adding > MAX_V1_ENTRIES_PER_RESOURCE:
            raise CoordinatorError(
                f"too many booked requests for {resource.id} ({MAX_V1_ENTRIES_PER_RESOURCE});"
                " retry when some expire"
            )
        if self._total + adding > MAX_BOOKED:
            for other in self._resources.by_id.values():  # housekeeping prunes a slice at a time
                self.prune(other, wall_now)
        if self._total + adding > MAX_BOOKED:
            raise CoordinatorError(
                f"too many booked requests ({MAX_BOOKED}); retry when some expire"
            )

    def _book(self, resource: Resource, times: list[float], expires: list[float]) -> None:
        resource.bookings.add(times, expires)
        self._total += len(times)
