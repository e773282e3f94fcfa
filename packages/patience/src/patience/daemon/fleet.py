"""The fleet registry (the Redis backend): every daemon sharing a Redis, seen from any of them.

At each heartbeat (HEARTBEAT seconds; lifecycle.Intervals.fleet_heartbeat) a daemon writes
its record (patience.daemon.fleet_records) into the hash `patience:fleet:{fleet}:records`,
and its expiry time into the sorted set `patience:fleet:{fleet}:members`; a record not
renewed for EXPIRY_BEATS heartbeats (plus a second) is dropped by the next daemon's heartbeat,
and the keys themselves expire once no daemon writes. A daemon that stops removes its record.
The same call marks the resources this daemon is active on, in one sorted set per resource
(`patience:fleet:{fleet}:active:RESOURCE`), and counts the daemons active on each resource
it tracks: the fallback share (patience.daemon.fleet_share). Every key carries the hash tag
`{fleet}`, so all of them live in one slot of a Redis Cluster; nothing lists the keyspace.

One script call per heartbeat, with Redis's clock (TIME) for every expiry, so the hosts'
clocks need not agree. The other daemons' records (at most MAX_DAEMONS, the most recently
renewed, and how many there are; this daemon's own is always shown) are read in the same
call only while someone looks at the fleet (a `fleet` query within the last WATCHED_FOR
seconds): a fleet of a thousand daemons does not read a thousand records each second for
nobody. The `fleet` query answers from the last view read; one not fresh asks for a
heartbeat at once (at most four a heartbeat), and says so (`fresh`), so a caller may ask again
a moment later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from patience import __version__
from patience.daemon import protocol
from patience.daemon.coordinator import Coordinator
from patience.daemon.fleet_records import (
    MAX_ACTIVE,
    MAX_DAEMONS,
    FleetRecord,
    decode_record,
    encode_record,
    make_record,
    view,
)
from patience.daemon.fleet_share import divisors, resource_uses
from patience.daemon.framing import Session
from patience.daemon.protocol import Fleet, FleetResponse
from patience.daemon.redis_admission import daemon_identity

__all__ = ["EXPIRY_BEATS", "HEARTBEAT", "PREFIX", "WATCHED_FOR", "FleetService", "expiry"]

log = logging.getLogger("patience.daemon")

HEARTBEAT = 1.0  # seconds between two records of a daemon (the default)
EXPIRY_BEATS = 3  # heartbeats a record outlives its last renewal (plus a second)
WATCHED_FOR = 60.0  # seconds the fleet is read at each heartbeat after a `fleet` query
PREFIX = "patience:fleet:{fleet}:"
MEMBERS = PREFIX + "members"
RECORDS = PREFIX + "records"
ACTIVE = PREFIX + "active:"

# KEYS: members, records, then one active set per resource (those this daemon is active on
# first); ARGV: id, record, expiry (ms), how many resources are active, records to read.
# Returns the daemons active on each resource, and when asked the live daemons' number and
# up to that many records (newest heartbeat first).
HEARTBEAT_SCRIPT = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id, ttl, active = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('HSET', KEYS[2], id, ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, id)
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
if #gone > 0 then
  redis.call('ZREM', KEYS[1], unpack(gone))
  redis.call('HDEL', KEYS[2], unpack(gone))
end
redis.call('PEXPIRE', KEYS[1], ttl)
redis.call('PEXPIRE', KEYS[2], ttl)
local counts = {}
for i = 3, #KEYS do
  if i - 2 <= active then redis.call('ZADD', KEYS[i], now + ttl, id) end
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  counts[i - 2] = redis.call('ZCARD', KEYS[i])
  if counts[i - 2] > 0 then redis.call('PEXPIRE', KEYS[i], ttl) end
end
local read = tonumber(ARGV[5])
if read == 0 then return {counts} end
local total = redis.call('ZCOUNT', KEYS[1], '(' .. now, '+inf')
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. now, 'LIMIT', 0, read)
if #ids == 0 then return {counts, total, {}} end
return {counts, total, redis.call('HMGET', KEYS[2], unpack(ids))}
"""

# KEYS: members, records, the active sets this daemon was in; ARGV: id.
LEAVE_SCRIPT = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
for i = 3, #KEYS do redis.call('ZREM', KEYS[i], ARGV[1]) end
return 1
"""


def expiry(heartbeat: float) -> float:
    """Seconds a record outlives its last renewal."""
    return EXPIRY_BEATS * heartbeat + 1.0


class Handling(Protocol):
    table: dict[type, Callable[[Session, Any], Any]]


class FleetService:
    """A service of the daemon's life cycle. `client` and `errors` are the Redis admission's
    (its redis.asyncio client, and the exceptions that mean Redis cannot be used: the
    admission's own watch logs the outage); `started` is the daemon's start (Unix seconds)."""

    def __init__(
        self,
        coordinator: Coordinator,
        client: Any,
        errors: tuple[type[BaseException], ...],
        started: float,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.coordinator = coordinator
        self.client = client
        self.errors = errors
        self.started = started
        self.heartbeat = heartbeat
        self.identity = daemon_identity()
        self.host = socket.gethostname()
        self._script = client.register_script(HEARTBEAT_SCRIPT)
        self._leave = client.register_script(LEAVE_SCRIPT)
        self._active_keys: list[str] = []  # the active sets this daemon was last put in
        self._asked_at = -math.inf  # monotonic: the last `fleet` query
        self._read_at = -math.inf  # monotonic: the last read of the fleet
        self._beat_at = -math.inf  # monotonic: the last heartbeat tried
        self._view = view([], self.identity, 0, 0)  # the last read (none yet)
        self._as_of: float | None = None  # Unix seconds of that read
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, handlers: Handling) -> None:
        """Answer `fleet`."""
        handlers.table[Fleet] = self._reply

    # ---- the service's life -------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        """Stop beating and remove this daemon's record (a daemon killed instead expires)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        keys = [MEMBERS, RECORDS, *self._active_keys]
        with contextlib.suppress(*self.errors):
            await self._leave(keys=keys, args=[self.identity])

    async def _loop(self) -> None:
        while True:
            try:
                await self.beat(time.monotonic())
            except self.errors:
                pass  # Redis is away: the admission says so; the last view stands
            except Exception as exc:  # a bug: say so, keep beating
                log.error("fleet registry: %r", exc)
            share = self.coordinator.fleet_share
            if share.outage:  # resources tracked since the outage began get their share
                share.apply(False)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.heartbeat)

    async def beat(self, now: float) -> None:
        """Write this daemon's record, count the daemons on its resources, and read the fleet
        when someone looks at it."""
        self._beat_at = now
        coordinator = self.coordinator
        uses = resource_uses(coordinator.resources, now)
        clients = Counter(client.tool or "unknown" for client in coordinator.clients.values())
        record = make_record(
            self.identity, self.host, os.getpid(), __version__, self.started, clients, uses
        )
        counted = sorted(uses, key=lambda use: (not use.active, -use.granted))[:MAX_ACTIVE]
        active = [use.id for use in counted if use.active]
        read = MAX_DAEMONS if now - self._asked_at <= WATCHED_FOR else 0
        keys = [MEMBERS, RECORDS, *(ACTIVE + use.id for use in counted)]
        args = [self.identity, encode_record(record), int(expiry(self.heartbeat) * 1000)]
        reply = await self._script(keys=keys, args=[*args, len(active), read])
        self._active_keys = keys[2 : 2 + len(active)]
        counts = dict(zip((use.id for use in counted), reply[0], strict=True))
        coordinator.fleet_share.daemons = divisors(counts, set(active))
        if read:
            self._read(record, int(reply[1]), reply[2] if len(reply) > 2 else [], now)

    def _read(self, own: FleetRecord, total: int, raw: list[bytes | None], now: float) -> None:
        """The records read, with this daemon's own among them even when the fleet is larger
        than a read (others renewed since)."""
        records = [decode_record(data) for data in raw if data is not None]
        others = [r for r in records if r is not None and r.id != self.identity]
        skipped = records.count(None)
        self._view = view([own, *others], self.identity, total, len(raw), skipped)
        self._read_at, self._as_of = now, time.time()

    # ---- the `fleet` query --------------------------------------------------------------------

    def _reply(self, session: Session, message: Fleet) -> bytes:
        now = time.monotonic()
        self._asked_at = now
        fresh = now - self._read_at <= 2 * self.heartbeat
        if not fresh and now - self._beat_at >= self.heartbeat / 4:
            self._wake.set()  # read it now (a storm of queries: at most 4 reads a heartbeat)
        return protocol.encode(
            FleetResponse(
                **self._view,  # type: ignore[arg-type]
                as_of=self._as_of,
                fresh=fresh,
                heartbeat=self.heartbeat,
            )
        )
