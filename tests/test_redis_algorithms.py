"""The Redis scripts against the Python limiters they transcribe, on a real redis-server:
for any sequence of (time, tokens) requests both give the same decisions, float for float.
Also: turns claimed across daemons, Redis TIME as the clock, namespaced keys that expire."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator

import pytest
import redis.asyncio
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon_support import short_dir
from patience.ratelimit.algorithms import Decision, Limiter, make_limiter
from patience.ratelimit.redis_store import PREFIX, Ask, RedisLimits, state_keys
from redis_support import RedisServer, redis_server

ALGORITHMS = ("diophantine", "fixed-window", "gcra")
_ids = itertools.count()


class Store:
    """A RedisLimits with its own event loop, driven from synchronous test code."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server
        self.runner = asyncio.Runner()
        self.client = redis.asyncio.Redis(unix_socket_path=server.socket)
        self.clocked = RedisLimits(self.client, redis_clock=True, who="a")
        self.daemons = {who: RedisLimits(self.client, False, who) for who in ("a", "b")}

    def acquire(
        self,
        resource: str,
        limiter: Limiter,
        tokens: int,
        now: float,
        redis_clock: bool = False,
        who: str = "a",
        wait: float = 1e9,
    ) -> Decision:
        [decision] = self.batch(resource, limiter, [(tokens, wait)], now, redis_clock, who)
        return decision

    def batch(
        self,
        resource: str,
        limiter: Limiter,
        requests: list[tuple[int, float]],
        now: float,
        redis_clock: bool = False,
        who: str = "a",
    ) -> list[Decision]:
        """One script call deciding `requests` in order: the decisions up to the first refusal."""
        store = self.clocked if redis_clock else self.daemons[who]
        ask = Ask(resource, limiter.as_limit(), [x for request in requests for x in request])
        [result] = self.runner.run(store.decide([ask], now, 0.5))
        assert not isinstance(result, Exception), result
        return result

    def close(self) -> None:
        self.runner.run(self.client.aclose())
        self.runner.close()


@pytest.fixture(scope="module")
def store() -> Iterator[Store]:
    with short_dir() as directory, redis_server(directory) as server:
        store = Store(server)
        try:
            yield store
        finally:
            store.close()


Steps = list[tuple[float, int]]


@st.composite
def workloads(draw: st.DrawFn, algorithm: str) -> tuple[int, float, float, Steps]:
    """A limit, a window, a start time and (step, tokens) requests. Steps favour the window
    boundaries and the emission interval; a few go backwards (a clock seen standing still)."""
    small = st.integers(1, 12)
    limit = draw(small if algorithm == "diophantine" else small | st.sampled_from([997, 10**6]))
    window = draw(
        st.sampled_from([1.0, 0.1, 0.3, 3.0, 60.0, 3600.0, 86400.0]) | st.floats(1e-3, 1e4)
    )
    start = draw(st.sampled_from([0.0, 12345.678, 1.7e9, 1.7e9 + 0.123456789]) | st.floats(0, 1e6))
    step = st.sampled_from(
        [0.0, window, window / limit, window / 2, window * 0.999999, window * 1.000001]
    ) | st.floats(-window / 2, 2 * window)
    tokens = st.integers(1, limit) if limit <= 12 else st.sampled_from([1, 2, limit // 3, limit])
    steps = draw(st.lists(st.tuples(step, tokens), min_size=1, max_size=40))
    return limit, window, start, steps


def same_decisions(store: Store, algorithm: str, workload: tuple[int, float, float, Steps]) -> None:
    limit, window, now, steps = workload
    python = make_limiter(algorithm, limit, window)
    spec = make_limiter(algorithm, limit, window)  # names the limit; its own state stays empty
    resource = f"equivalence-{next(_ids)}"
    for step, tokens in steps:
        now += step
        expected = python.acquire(now, tokens)
        got = store.acquire(resource, spec, tokens, now)
        assert repr(got) == repr(expected), (now, tokens)


@settings(max_examples=150)
@given(workloads("diophantine"))
def test_sliding_window_log_decides_as_the_python_class(
    store: Store, workload: tuple[int, float, float, Steps]
) -> None:
    same_decisions(store, "diophantine", workload)


@settings(max_examples=150)
@given(workloads("fixed-window"))
def test_fixed_window_decides_as_the_python_class(
    store: Store, workload: tuple[int, float, float, Steps]
) -> None:
    same_decisions(store, "fixed-window", workload)


@settings(max_examples=150)
@given(workloads("gcra"))
def test_gcra_decides_as_the_python_class(
    store: Store, workload: tuple[int, float, float, Steps]
) -> None:
    same_decisions(store, "gcra", workload)


def same_decisions_in_batches(
    store: Store, algorithm: str, workload: tuple[int, float, float, Steps], joins: list[bool]
) -> None:
    """The requests in batches, as the daemon sends them (a request that joins the batch
    before it comes at that batch's time): a batch's decisions stop at its first refusal, and
    the requests after it lead the next batch. Each decision is the Python limiter's."""
    limit, window, now, steps = workload
    python = make_limiter(algorithm, limit, window)
    spec = make_limiter(algorithm, limit, window)
    resource = f"batches-{next(_ids)}"
    batches: list[tuple[float, list[int]]] = []
    for (step, tokens), join in zip(steps, joins, strict=True):
        if join and batches:
            batches[-1][1].append(tokens)
        else:
            now += step
            batches.append((now, [tokens]))
    waiting: list[int] = []
    for at, tokens in batches:
        waiting += tokens
        got = store.batch(resource, spec, [(t, 1e9) for t in waiting], at)
        expected = []
        for t in waiting:
            expected.append(python.acquire(at, t))
            if not expected[-1].granted:
                break
        assert [repr(d) for d in got] == [repr(d) for d in expected], (at, waiting)
        waiting = waiting[len(got) :]


@settings(max_examples=150)
@given(st.sampled_from(ALGORITHMS), st.data())
def test_batches_decide_as_the_python_class_one_request_after_another(
    store: Store, algorithm: str, data: st.DataObject
) -> None:
    workload = data.draw(workloads(algorithm))
    joins = data.draw(st.lists(st.booleans(), min_size=len(workload[3]), max_size=len(workload[3])))
    same_decisions_in_batches(store, algorithm, workload, joins)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_large_limits_and_times_stay_exact(store: Store, algorithm: str) -> None:
    """Unix times in ns times a large limit are far beyond 2^53: GCRA's bignums must hold."""
    limit = 5000 if algorithm == "diophantine" else 10**9
    same_decisions(
        store,
        algorithm,
        (limit, 86400.0, 1.7e9 + 0.987654321, [(0.0, limit // 2), (0.5, limit // 2), (1e-9, 7)]),
    )


def test_the_sliding_log_keeps_runs_not_tokens(store: Store) -> None:
    """Tokens granted at one time are one entry in Redis, whatever their number, and answers
    that fall inside a run stay exact."""
    same_decisions(
        store,
        "diophantine",
        (10**9, 3600.0, 1.7e9, [(0.0, 10**5), (0.0, 10**5), (1.0, 10**5), (1.0, 10**9)]),
    )
    spec = make_limiter("diophantine", 10**9, 3600.0)
    resource = f"runs-{next(_ids)}"
    for now in (1.7e9, 1.7e9, 1.7e9 + 1.0):
        assert store.acquire(resource, spec, 10**5, now).granted
    assert store.server.client().llen(state_keys(resource, spec.as_limit())[1]) == 2


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_waiting_daemon_claims_the_next_turn(store: Store, algorithm: str) -> None:
    """Daemon b, refused while a holds the limit, has the next capacity kept for it until it
    comes back (by its retry time plus its hold, 0.5s here); then a's turn comes the same way."""
    spec = make_limiter(algorithm, 1, 10.0)
    resource = f"turns-{next(_ids)}"
    assert store.acquire(resource, spec, 1, 100.0, who="a").granted
    refused = store.acquire(resource, spec, 1, 101.0, who="b")
    assert not refused.granted
    b_turn = 101.0 + refused.retry_after
    held = store.acquire(resource, spec, 1, b_turn, who="a")  # free, but b's turn
    assert not held.granted
    assert held.retry_after == pytest.approx(0.05)  # try again soon: a tenth of a's hold
    assert store.acquire(resource, spec, 1, b_turn + 0.1, who="b").granted
    refused = store.acquire(resource, spec, 1, b_turn + 0.2, who="a")
    assert not refused.granted
    a_turn = b_turn + 0.2 + refused.retry_after
    assert not store.acquire(resource, spec, 1, a_turn, who="b").granted
    assert store.acquire(resource, spec, 1, a_turn + 0.1, who="a").granted


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_claim_lapses_when_the_claimant_does_not_come_back(store: Store, algorithm: str) -> None:
    spec = make_limiter(algorithm, 1, 10.0)
    resource = f"lapsing-{next(_ids)}"
    assert store.acquire(resource, spec, 1, 100.0, who="a").granted
    refused = store.acquire(resource, spec, 1, 101.0, who="b")
    free_at = 101.0 + refused.retry_after
    assert not store.acquire(resource, spec, 1, free_at + 0.4, who="a").granted
    assert store.acquire(resource, spec, 1, free_at + 0.5, who="a").granted


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_request_that_will_not_wait_claims_nothing(store: Store, algorithm: str) -> None:
    spec = make_limiter(algorithm, 1, 10.0)
    resource = f"impatient-{next(_ids)}"
    assert store.acquire(resource, spec, 1, 100.0, who="a").granted
    refused = store.acquire(resource, spec, 1, 101.0, who="b", wait=1.0)
    assert not refused.granted
    assert store.acquire(resource, spec, 1, 101.0 + refused.retry_after, who="a").granted


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_redis_time_is_the_clock_when_configured(store: Store, algorithm: str) -> None:
    """With redis_clock the time passed is ignored: two requests at "time 0" a long window
    apart still share one window, and the refusal counts from Redis TIME."""
    spec = make_limiter(algorithm, 2, 60.0)
    resource = f"clocked-{next(_ids)}"
    assert store.acquire(resource, spec, 2, 0.0, redis_clock=True).granted
    refused = store.acquire(resource, spec, 1, 1e6, redis_clock=True)
    assert not refused.granted
    assert 0.0 < refused.retry_after <= 60.0


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_keys_are_namespaced_and_expire(store: Store, algorithm: str) -> None:
    spec = make_limiter(algorithm, 3, 0.2)
    resource = f"expiring-{next(_ids)}"
    keys = state_keys(resource, spec.as_limit())
    assert store.acquire(resource, spec, 2, time.time()).granted
    sync = store.server.client()
    assert all(key.startswith(PREFIX + "{" + resource + "}:") for key in keys)
    assert sync.exists(*keys) == len(keys)
    for key in keys:
        assert 0 < sync.pttl(key) <= 200 + 1000
    deadline = time.monotonic() + 10.0
    while sync.exists(*keys):
        assert time.monotonic() < deadline, "the keys never expired"
        time.sleep(0.05)
