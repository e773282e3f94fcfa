"""Throttle feedback as a service of the daemon: the `feedback` message's handler, the clock
that judges the learned limits' windows (every TICK), the host's load for `adapt_to_load`
resources (every LOAD_EVERY), and the learned limits carried across a restart (the state
file, patience.daemon.state) and to other hosts (the Redis backend, patience.daemon.
learned_share). The decisions are the coordinator's (patience.daemon.learner).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from patience.daemon import protocol
from patience.daemon.coordinator import Coordinator
from patience.daemon.feedback_messages import Feedback, FeedbackResponse
from patience.daemon.framing import Session
from patience.daemon.registry import Client
from patience.daemon.resources import Resource
from patience.daemon.state import SavedLearned
from patience.ratelimit.learned import LearnedLimit

__all__ = ["LOAD_EVERY", "TICK", "FeedbackService", "Listener"]

log = logging.getLogger("patience.daemon")

TICK = 0.1  # seconds between two looks at the learned limits and pauses
LOAD_EVERY = 2.0  # seconds between two readings of the host's load (adapt_to_load)

# Told of each throttle signal: (resource id, tool, client id, Unix time); the alerts.
Listener = Callable[[str, str, str, float], None]


class Handling(Protocol):
    """The request handlers' table, whom a connection speaks for, and the daemon's timer."""

    table: dict[type, Callable[[Session, Any], Any]]

    def client_for(self, session: Session) -> Client: ...

    def wake(self) -> None: ...


class Sharing(Protocol):
    """The learned limits shared through Redis (patience.daemon.learned_share)."""

    def publish(self, resource_id: str, learned: LearnedLimit, paused_until: float) -> None: ...

    async def pull(self, coordinator: Coordinator) -> None: ...


class FeedbackService:
    """`load` reads the host's load as a ratio to its targets (1.0: at target; None: no
    reading), for adapt_to_load; `share` carries learned limits to other hosts (Redis)."""

    def __init__(
        self,
        coordinator: Coordinator,
        load: Callable[[], float | None],
        share: Sharing | None = None,
    ) -> None:
        self.coordinator = coordinator
        self.load = load
        self.share = share
        self.listeners: list[Listener] = []
        self._wake: Callable[[], None] = lambda: None
        self._task: asyncio.Task[None] | None = None

    def attach(self, handlers: Handling) -> None:
        """Answer `feedback`."""
        self._wake = handlers.wake

        def feedback(session: Session, message: Feedback) -> bytes:
            return self.report(handlers.client_for(session), message, time.monotonic())

        handlers.table[Feedback] = feedback

    def report(self, client: Client, message: Feedback, now: float) -> bytes:
        """A throttle signal: pause and learn (the coordinator), tell the listeners."""
        before = self.coordinator.limit_of(message.resource_id)
        resource, decreased = self.coordinator.throttled(
            client, message.resource_id, message.retry_after, now
        )
        wall = time.time()
        for listener in self.listeners:
            listener(resource.id, client.tool, client.id, wall)
        spec = resource.spec
        if decreased and spec is not None:
            was = f" (was {before.limit.count})" if before is not None else ""
            log.info(
                "%s: throttled (%s, from %s): its limit is now %s%s",
                resource.id, message.signal, client.id, spec.limit.describe(), was,
            )  # fmt: skip
        self._published(resource)
        self._wake()
        return protocol.encode(
            FeedbackResponse(
                limit=spec.limit.count if spec is not None else None,
                decreased=decreased,
                learned=self.coordinator.learned_state(resource, wall - now),
            )
        )

    def _published(self, resource: Resource) -> None:
        if self.share is not None and resource.learned is not None:
            offset = time.time() - time.monotonic()
            self.share.publish(resource.id, resource.learned, resource.paused_until + offset)

    # ---- the service's life ---------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        last_load = last_pull = 0.0
        while True:
            await asyncio.sleep(TICK)
            now = time.monotonic()
            try:
                self.tick(now)
                if now - last_load >= LOAD_EVERY:
                    last_load = now
                    self.adapt_to_load(now)
                if self.share is not None and now - last_pull >= 1.0:
                    last_pull = now
                    await self.share.pull(self.coordinator)
            except Exception as exc:  # a bug: say so, keep going
                log.error("learned limits: %r", exc)

    def tick(self, now: float) -> None:
        """The learned limits' windows judged, the pauses that are over ended."""
        for resource in self.coordinator.tick_learned(now):
            self._published(resource)
        self._wake()

    def adapt_to_load(self, now: float) -> None:
        """Scale the limits of adapt_to_load resources by how far the host is above target."""
        resources = self.coordinator.load_adapted()
        if not resources:
            return
        ratio = self.load()
        factor = 1.0 if ratio is None or ratio <= 1.0 else 1.0 / ratio
        for resource in resources:
            self.coordinator.set_load_factor(resource, factor, now)
        self._wake()

    # ---- across a restart -------------------------------------------------------------------

    def saved(self) -> list[SavedLearned]:
        """The learned limits, for the state file."""
        return [
            SavedLearned(rid, learned.window, learned.to_state())
            for rid, learned in self.coordinator.learned.items()
        ]

    def restore(self, saved: list[SavedLearned], now: float) -> None:
        """The learned limits a previous daemon saved: each carries on where it was."""
        for entry in saved:
            learned = LearnedLimit(self.coordinator.learning_for(entry.id), entry.window, None, now)
            learned.restore(entry.state)
            self.coordinator.adopt_learned(entry.id, learned, now)
