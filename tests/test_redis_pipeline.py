"""Several resources' batches in one round trip (RedisLimits.decide) on a real redis-server and
on a real three-master Redis Cluster, where redis-py's cluster pipeline splits the calls by
node: each batch decides as the Python limiter would; scripts Redis forgot are loaded again;
an error reply spoils only its own batch."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from typing import Any

import redis

from daemon_support import short_dir
from patience.daemon.redis_connect import connect
from patience.ratelimit.algorithms import Decision, make_limiter
from patience.ratelimit.redis_store import Ask, RedisLimits, state_keys
from patience.settings import Limit
from redis_ha_support import cluster_set
from redis_support import redis_server

ALGORITHMS = ("diophantine", "fixed-window", "gcra")
_ids = itertools.count()


def expected(limit: Limit, requests: list[int], now: float) -> list[str]:
    """The Python limiter's decisions on a fresh state, up to the first refusal."""
    limiter = make_limiter(limit.algorithm, limit.count, limit.window)
    decisions: list[Decision] = []
    for tokens in requests:
        decisions.append(limiter.acquire(now, tokens))
        if not decisions[-1].granted:
            break
    return [repr(d) for d in decisions]


def asks(count: int) -> list[tuple[Ask, list[str]]]:
    """`count` batches on distinct resources (every algorithm, some ending in a refusal), each
    with the decisions the Python limiters make on it at time 1000.0."""
    made = []
    for number in range(count):
        limit = Limit(3 + number % 4, 10.0, ALGORITHMS[number % 3])
        requests = [1, 2, 1, 1][: 2 + number % 3]
        flat: list[int | float] = [x for tokens in requests for x in (tokens, 1e9)]
        ask = Ask(f"pipe-{next(_ids)}-{number}", limit, flat)
        made.append((ask, expected(limit, requests, 1000.0)))
    return made


def decide(client: Any, batch: list[Ask]) -> list[list[Decision] | Exception]:
    async def run() -> list[list[Decision] | Exception]:
        try:
            return await RedisLimits(client, False, "me").decide(batch, 1000.0, 0.5)
        finally:
            await client.aclose()

    return asyncio.run(run())


def check(results: list[list[Decision] | Exception], made: list[tuple[Ask, list[str]]]) -> None:
    for result, (_, wanted) in zip(results, made, strict=True):
        assert not isinstance(result, Exception), result
        assert [repr(d) for d in result] == wanted


@contextlib.contextmanager
def server_url() -> Iterator[str]:
    with short_dir() as directory, redis_server(directory) as server:
        yield server.url


def test_many_resources_in_one_round_trip_decide_as_the_python_limiters() -> None:
    made = asks(12)
    with server_url() as url:
        check(decide(connect(url, False), [ask for ask, _ in made]), made)


def test_scripts_redis_forgot_are_loaded_again() -> None:
    made, again = asks(3), asks(1)
    with server_url() as url:
        check(decide(connect(url, False), [ask for ask, _ in made]), made)
        with redis.Redis.from_url(url) as sync:
            sync.script_flush()
        check(decide(connect(url, False), [ask for ask, _ in again]), again)


def test_an_error_reply_spoils_only_its_own_batch() -> None:
    made = asks(3)
    broken = made[1][0]
    with server_url() as url:
        with redis.Redis.from_url(url) as sync:
            sync.set(state_keys(broken.resource_id, broken.limit)[0], "not a hash")
        results = decide(connect(url, False), [ask for ask, _ in made])
    assert isinstance(results[1], Exception) and "WRONGTYPE" in str(results[1])
    check([results[0], results[2]], [made[0], made[2]])


def test_a_batch_alone_that_meets_an_error_reply_returns_it() -> None:
    [(ask, _)] = asks(1)
    with server_url() as url:
        with redis.Redis.from_url(url) as sync:
            sync.set(state_keys(ask.resource_id, ask.limit)[0], "not a hash")
        [result] = decide(connect(url, False), [ask])
    assert isinstance(result, Exception) and "WRONGTYPE" in str(result)


def test_on_a_cluster_the_calls_go_to_the_masters_holding_their_slots() -> None:
    made = asks(12)
    with short_dir() as directory, cluster_set(directory) as cluster:
        owners = {
            cluster.owner(cluster.keyslot(state_keys(ask.resource_id, ask.limit)[0]))
            for ask, _ in made
        }
        assert len(owners) == 3  # the batches span every master
        check(decide(connect(cluster.url, True), [ask for ask, _ in made]), made)
        for ask, _ in made:  # each state is on the master that holds its slot
            key = state_keys(ask.resource_id, ask.limit)[0]
            port = cluster.owner(cluster.keyslot(key))
            node = next(n for n in cluster.nodes if n.port == port)
            with node.client() as client:
                assert client.exists(key) == 1
