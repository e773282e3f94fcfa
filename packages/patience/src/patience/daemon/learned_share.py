"""Learned limits shared by the daemons of many hosts (the Redis backend).

Each daemon publishes a learned limit when it changes (a throttle signal it heard, a clean
window it judged): one field per resource in the hash `patience:{learned}`, the control law's
state with its window, the pause in force (Unix seconds), who wrote it and when, and a version
counter `patience:{learned}:version` bumped with each write (the braces put both in one Redis
Cluster hash slot: the write is one transaction there too). Once a second each daemon reads
the counter, and when it moved, the hash: an entry another daemon wrote after this daemon's
last word on that resource is adopted (the latest writer wins), its pause included. So a
server's "stop" heard by one host pauses and slows every host within about a second.

Bounded: at most MAX_LEARNED entries are read; the hash expires a day after its last write.
A Redis error is logged once per outage by the Redis admission's own watch; here it only
skips the exchange.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec

from patience.daemon.coordinator import Coordinator
from patience.daemon.learner import MAX_LEARNED
from patience.daemon.redis_admission import daemon_identity
from patience.ratelimit.learned import LearnedLimit

__all__ = ["HASH", "VERSION", "LearnedShare", "SharedLearned"]

HASH = "patience:{learned}"
VERSION = "patience:{learned}:version"
EXPIRY = 86400  # seconds the hash outlives its last write


class SharedLearned(msgspec.Struct, forbid_unknown_fields=True):
    state: dict[str, float | int | None]
    window: float
    paused_until: float | None  # Unix seconds
    by: str  # the daemon that wrote it
    at: float  # when, Unix seconds


class LearnedShare:
    """`client` is the Redis admission's (redis.asyncio); `errors` the exceptions it raises
    when Redis cannot be used."""

    def __init__(self, client: Any, errors: tuple[type[BaseException], ...]) -> None:
        self.client = client
        self.errors = errors
        self.identity = daemon_identity()
        self.version: int | None = None
        self.said: dict[str, float] = {}  # resource id -> when this daemon last wrote or read
        self._tasks: set[asyncio.Task[None]] = set()

    def publish(self, resource_id: str, learned: LearnedLimit, paused_until: float) -> None:
        """Write `learned` (fire and forget: the daemon's loop never waits for Redis)."""
        now = time.time()
        self.said[resource_id] = now
        entry = SharedLearned(
            learned.to_state(),
            learned.window,
            paused_until if paused_until > now else None,
            self.identity,
            now,
        )
        task = asyncio.get_running_loop().create_task(
            self._write(resource_id, msgspec.json.encode(entry))
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, resource_id: str, data: bytes) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(HASH, resource_id, data)
                pipe.expire(HASH, EXPIRY)
                pipe.incr(VERSION)
                pipe.expire(VERSION, EXPIRY)
                await pipe.execute()
        except self.errors:
            pass

    async def pull(self, coordinator: Coordinator) -> None:
        """Adopt what other daemons wrote since this one last looked."""
        try:
            raw = await self.client.get(VERSION)
            version = int(raw) if raw is not None else 0
            if version == self.version:
                return
            if await self.client.hlen(HASH) > MAX_LEARNED:
                return
            entries = await self.client.hgetall(HASH)
        except self.errors:
            return
        self.version = version
        for key, data in entries.items():
            self._adopt(coordinator, key.decode(errors="replace"), data)

    def _adopt(self, coordinator: Coordinator, resource_id: str, data: bytes) -> None:
        try:
            entry = msgspec.json.decode(data, type=SharedLearned)
        except msgspec.DecodeError:
            return
        if entry.by == self.identity or entry.at <= self.said.get(resource_id, 0.0):
            return
        self.said[resource_id] = entry.at
        now, wall = time.monotonic(), time.time()
        learned = LearnedLimit(coordinator.learning_for(resource_id), entry.window, None, now)
        learned.restore(entry.state)
        paused = entry.paused_until
        pause = now + (paused - wall) if paused is not None and paused > wall else None
        coordinator.adopt_learned(resource_id, learned, now, pause)
