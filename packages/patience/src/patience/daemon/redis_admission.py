"""Admission through Redis (`[daemon] backend = "redis"`): daemons on many hosts, one limit.

The coordinator keeps the queue, the fair shares and the clients; this module carries the
admissions it hands out (`Coordinator.take`) to Redis (patience.ratelimit.redis_store) and
brings the decisions back (`Coordinator.settle`), without blocking the event loop. Each time
the daemon's timer finds waiters whose turn has come (once per pass of the event loop at
most), every such resource's batch (its next waiters, in queue order) goes to Redis in one
round trip, one script call per resource; a resource has one batch in flight at a time, and
the requests that come meanwhile make up its next one, so the busier a resource, the larger
its batches and the fewer the calls per grant. The time, the keys and the arguments common to
a batch are worked out once for it. Each round trip has a short timeout and is never retried
blindly. A request Redis refuses may claim the next turn for this daemon (see redis_store);
the claim lasts past its retry time by twice this daemon's recent round trip to Redis, so
that a daemon far from Redis is not always beaten to freed capacity by one nearby.

When Redis cannot be reached (or answers with an error), the daemon logs one line, says so in
`status`, and enforces its limits locally, every request of a failed call's batches included:
the coordinator's own limiters, which have kept counting this daemon's grants, decide until
Redis answers again, which is logged too. Each daemon then allows the full limit on its own:
that is the price of staying up, and it ends when Redis is back. A ping once a second notices
either change even when no request needs Redis.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Coroutine
from typing import Any

from patience.daemon.admission import Resolved, Waiter
from patience.daemon.coordinator import Coordinator
from patience.daemon.redis_connect import TIMEOUT, errors
from patience.ratelimit.algorithms import Decision
from patience.ratelimit.redis_store import Ask, RedisLimits

__all__ = ["WATCH_EVERY", "RedisAdmission", "daemon_identity"]

log = logging.getLogger("patience.daemon")

HOLD_MARGIN = 0.02  # seconds a claim lasts past the claimant's expected return, besides its RTT
WATCH_EVERY = 1.0  # seconds between pings (the daemon's default: lifecycle.Intervals)


class RedisAdmission:
    """`client` is a redis.asyncio client (redis_connect), `url` names it in logs and status
    (without credentials); `deliver` hands answers to their connections (and re-arms the
    daemon's timer); `watch_every` is the seconds between pings."""

    def __init__(
        self,
        coordinator: Coordinator,
        client: Any,
        url: str,
        redis_clock: bool,
        deliver: Callable[[Resolved], None],
        watch_every: float,
    ) -> None:
        self.coordinator = coordinator
        self.url = url
        self.deliver = deliver
        self.watch_every = watch_every
        self.client = client
        self.limits = RedisLimits(self.client, redis_clock, daemon_identity())
        self.round_trip = 0.0  # seconds, a moving average
        self.errors = errors()  # the cluster client's are not all RedisErrors
        self.unreachable_since: float | None = None  # Unix time
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Reach Redis once (if it is not there, start on local limits), then keep watching."""
        try:
            await self.client.ping()
        except self.errors as exc:
            self._lost(exc)
        else:
            self.coordinator.set_remote(True)
            log.info("rate limits are kept in Redis at %s", self.url)
        self._spawn(self._watch())

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.aclose()

    def kick(self, now: float) -> Resolved:
        """Ask Redis about the waiters whose turn has come; the answers due at once."""
        if not self.coordinator.remote:
            return []
        batches, resolved = self.coordinator.take(now)
        if batches:
            self._spawn(self._decide(batches))
        return resolved

    async def _decide(self, batches: list[list[Waiter]]) -> None:
        start = time.monotonic()
        hold = min(TIMEOUT, HOLD_MARGIN + 2 * self.round_trip)
        asks = [_ask(batch, start) for batch in batches]
        results: list[list[Decision] | Exception] | None = None
        try:
            results = await self.limits.decide(asks, time.time(), hold)
            self.round_trip += (time.monotonic() - start - self.round_trip) / 8
        except Exception as exc:  # unreachable: never leave a batch pending
            self._lost(exc)
        now = time.monotonic()
        resolved: Resolved = []
        for index, batch in enumerate(batches):
            result = None if results is None else results[index]
            if isinstance(result, Exception):  # an error reply
                self._lost(result)
                result = None
            # None: the coordinator decides them with its local limiter
            resolved += self.coordinator.settle(batch, result, now)
        self.deliver(resolved)

    def _lost(self, exc: BaseException) -> None:
        if self.unreachable_since is not None:
            return
        self.unreachable_since = time.time()
        self.coordinator.set_remote(False)
        log.warning(
            "cannot use Redis at %s (%s): enforcing rate limits locally, per daemon,"
            " until it is back",
            self.url,
            str(exc) or type(exc).__name__,
        )
        self.deliver([])  # waiters queued for Redis are now the local limiters' to serve

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_every)
            try:
                await self.client.ping()
            except self.errors as exc:
                self._lost(exc)
                continue
            if self.unreachable_since is not None:
                self.unreachable_since = None
                self.coordinator.set_remote(True)
                log.info("Redis at %s is back: rate limits are global again", self.url)
                self.deliver([])  # waiters queued meanwhile are now Redis's to decide

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ask(batch: list[Waiter], start: float) -> Ask:
    """The batch as Redis is asked about it: each request's tokens and remaining wait."""
    first = batch[0]
    limiter = first.limiter
    assert limiter is not None  # take hands out only waiters under a limit
    requests: list[int | float] = []
    for waiter in batch:
        requests += (waiter.tokens, max(0.0, waiter.deadline - start))
    return Ask(first.resource_id, limiter.as_limit(), requests)


def daemon_identity() -> str:
    """Names this daemon's claims: unique across hosts, containers and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(4).hex()}"
