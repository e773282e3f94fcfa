"""Rate-limit state kept in Redis, so daemons on many hosts enforce one global limit.

Each algorithm of algorithms.py has a Lua twin (patience.ratelimit.redis_scripts) that Redis
runs atomically and that decides exactly as the Python class does. One script call decides a
batch: a resource's next requests in its daemon's queue order, one after another, up to the
first refusal. `decide` sends the calls for several resources in one round trip (a pipeline,
not a transaction: each call is atomic on its own, and they need not be atomic together).
With Redis Cluster, redis-py's cluster pipeline splits them by node: every key of a resource
shares one hash slot, so each call goes whole to the node that holds it. A script Redis does
not know (after a restart or a failover) is loaded, and the calls it failed are sent again.

Time. Each batch carries the caller's clock (the daemon passes its wall clock, which hosts
share through NTP), or, with `redis_clock`, the script reads Redis TIME, one clock for every
host. As in the Python classes, a clock that goes backwards is treated as standing still: the
latest time seen is kept with the state.

Turns across daemons. Each daemon queues its own clients fairly, but which daemon reaches
Redis first when capacity frees up is a race that the one nearest to Redis would always win.
So a request the algorithm refuses, and that will wait, claims the next capacity for its daemon
(`who`) if no other daemon holds a claim: until the claimant comes back (its retry time plus
`hold`, which covers its round trip), other daemons are admitted only where enough is left for
the claimant too, and are told to retry soon (a tenth of their own hold, or when the claim
ends): capacity freed in a burst is shared, not left to whoever is nearest. The claimant's
next admission releases the claim. A daemon that never sees another daemon's claim decides
exactly as the Python class: a claim only ever refuses what the algorithm alone would admit.

Keys. `patience:ratelimit:{<resource>}:<algorithm>:<limit>:<window>` + `:state` (a hash: the
latest time, and the sliding log's token count, the fixed window's index and count or GCRA's
theoretical arrival time) and, for the sliding-window log, `:runs` (a list of runs, a grant
time and its tokens: one per grant time still in the window, however many tokens each took,
so memory never grows with tokens or limits). Daemons that configure different limits for a
resource therefore keep separate states. Every write sets
PEXPIRE to the window plus a second: by then the state says nothing the empty state would not,
so nothing outlives its use.
"""

from __future__ import annotations

import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Any

from patience.ratelimit.algorithms import Decision
from patience.ratelimit.redis_scripts import SCRIPTS
from patience.settings import DIOPHANTINE, Limit

__all__ = ["EXPIRY_SLACK_MS", "PREFIX", "Ask", "RedisLimits", "state_keys"]

PREFIX = "patience:ratelimit:"
EXPIRY_SLACK_MS = 1000
_SHAS = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}
_TEXTS = {_SHAS[name]: text for name, text in SCRIPTS.items()}


class Ask:
    """One resource's batch: its requests in queue order under `limit`, as a flat list of
    (tokens, seconds the request may still wait) pairs."""

    __slots__ = ("limit", "requests", "resource_id")

    def __init__(self, resource_id: str, limit: Limit, requests: list[int | float]) -> None:
        self.resource_id = resource_id
        self.limit = limit
        self.requests = requests


class RedisLimits:
    """The limiters' state in one Redis (or Cluster); `client` is a redis.asyncio client."""

    def __init__(self, client: Any, redis_clock: bool, who: str) -> None:
        from redis.exceptions import NoScriptError, ResponseError

        self.client = client
        self.redis_clock = redis_clock
        self.who = who
        self._no_script = NoScriptError
        self._error_reply = ResponseError

    async def decide(
        self, asks: Sequence[Ask], now: float, hold: float
    ) -> list[list[Decision] | Exception]:
        """Each batch's decisions at `now` (ignored with redis_clock), in order, up to and
        including the first refusal (the requests after it were not decided); an error reply
        stands for its batch's decisions. A refused request that will wait claims the next
        turn for `hold` seconds past its retry time. Raises when Redis cannot be reached."""
        when: float | str = "" if self.redis_clock else now
        commands = [
            (*_call(ask.resource_id, ask.limit), when, self.who, hold, *ask.requests)
            for ask in asks
        ]
        replies = await self._send(commands)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, self._no_script)]
        if missing:  # Redis restarted or failed over: it forgot the scripts
            for sha in {commands[i][1] for i in missing}:
                await self.client.script_load(_TEXTS[sha])
            again = await self._send([commands[i] for i in missing])
            for i, reply in zip(missing, again, strict=True):
                replies[i] = reply
        return [
            reply if isinstance(reply, Exception) else _decisions(reply, ask.limit.count)
            for ask, reply in zip(asks, replies, strict=True)
        ]

    async def _send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """One round trip: the replies, an error reply as its exception. The client of one
        server (a URL's, or the master Sentinel names) gets the calls written at once on one
        connection of its pool, with none of redis-py's per-command work (the daemon's cost
        per call is mostly that); a cluster's pipeline sends each node its own calls."""
        pool = getattr(self.client, "connection_pool", None)
        if pool is None:
            pipe = self.client.pipeline(transaction=False)
            for command in commands:
                pipe.execute_command(*command)
            return list(await pipe.execute(raise_on_error=False))
        connection = await pool.get_connection()
        try:
            packed = b"".join(map(_packed, commands))
            await connection.send_packed_command(packed, check_health=False)
            return [await self._reply(connection) for _ in commands]
        except BaseException:
            await connection.disconnect()  # a reply may be left unread on it
            raise
        finally:
            await pool.release(connection)

    async def _reply(self, connection: Any) -> Any:
        try:
            return await connection.read_response()
        except self._error_reply as exc:
            return exc


@functools.lru_cache(maxsize=4096)
def _call(resource_id: str, limit: Limit) -> tuple[Any, ...]:
    """What every call for this resource and limit starts with, up to the time: the
    command, the script, its keys, the limit and the expiry (worked out once, not per call)."""
    keys = state_keys(resource_id, limit)
    expiry = math.ceil(limit.window * 1000) + EXPIRY_SLACK_MS
    return ("EVALSHA", _SHAS[limit.algorithm], len(keys), *keys, limit.count, limit.window, expiry)


def _packed(command: tuple[Any, ...]) -> bytes:
    """A command in Redis's protocol: text in UTF-8, numbers as Python writes them (a
    float's repr is its shortest text that reads back as the same double)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg.encode() if isinstance(arg, str) else repr(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _decisions(reply: list[Any], limit: int) -> list[Decision]:
    """The flat reply (granted, remaining, retry after, reset after for each request)."""
    return [
        Decision(reply[i] == 1, int(reply[i + 1]), limit, float(reply[i + 2]), float(reply[i + 3]))
        for i in range(0, len(reply), 4)
    ]


def state_keys(resource_id: str, limit: Limit) -> tuple[str, ...]:
    """The keys holding one resource's state under one limit (the log only for the
    sliding-window log, diophantine)."""
    base = f"{PREFIX}{{{resource_id}}}:{limit.algorithm}:{limit.count}:{limit.window!r}"
    if limit.algorithm == DIOPHANTINE:
        return (base + ":state", base + ":runs")
    return (base + ":state",)
