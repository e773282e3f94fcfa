"""The coordinator's remote admission (the Redis backend) as pure code, the clock a parameter:
requests queue, `take` hands out one waiter per resource at a time, `settle` applies the
decision; deadlines, departures, the local fallback and the local bound on remote asks.

Two coordinators sharing one limiter object stand in for two daemons sharing Redis (the Redis
scripts decide exactly as the Python limiters: tests/test_redis_algorithms.py)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from patience.config.resources import ResourceLimit
from patience.daemon.coordinator import Coordinator, Waiter
from patience.daemon.protocol import Acquire, AcquireResponse
from patience.ratelimit.algorithms import Decision, make_limiter
from patience.settings import Limit


def remote(limit: int = 2, window: float = 10.0, algorithm: str = "diophantine") -> Coordinator:
    coord = Coordinator({"r": ResourceLimit(Limit(limit, window, algorithm))}, "diophantine", 60.0)
    coord.set_remote(True)
    return coord


def ask(tokens: int = 1, max_wait: float = 30.0) -> Acquire:
    return Acquire(resource_id="r", tokens=tokens, max_wait=max_wait)


def grant(remaining: int = 1) -> Decision:
    return Decision(True, remaining, 2, 0.0, 10.0)


def refusal(retry_after: float) -> Decision:
    return Decision(False, 0, 2, retry_after, retry_after)


def test_every_limited_request_queues_and_is_taken_once() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first, second = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(), 0.0)
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    assert coord.next_wakeup() == 0.0
    taken, answered = coord.take(0.0)
    assert taken == [first] and answered == []
    assert coord.take(0.0) == ([], [])  # one decision in flight per resource
    assert coord.poll(0.0) == []  # nothing is served locally while remote
    [(waiter, response)] = coord.settle(first, grant(remaining=7), 0.001)
    assert waiter is first and response.granted and response.remaining == 7
    assert coord.take(0.001) == ([second], [])


def test_grants_from_redis_are_counted_locally_and_bound_what_is_asked() -> None:
    coord = remote(limit=2)
    client = coord.connect("a", "repeater", 0.0)
    for at in (0.0, 1.0):
        waiter = coord.acquire(client, ask(), at)
        assert isinstance(waiter, Waiter)
        [taken], _ = coord.take(at)
        assert coord.settle(taken, grant(), at)[0][1].granted
    # Two tokens this daemon itself holds: the third cannot fit before 10s, Redis or not.
    refused = coord.acquire(client, ask(max_wait=5.0), 2.0)
    assert isinstance(refused, AcquireResponse) and not refused.granted
    assert refused.retry_after == 8.0
    waiter = coord.acquire(client, ask(max_wait=9.0), 2.0)
    assert isinstance(waiter, Waiter) and coord.next_wakeup() == 10.0
    assert coord.take(9.9) == ([], [])
    assert coord.take(10.0)[0] == [waiter]


def test_a_refusal_within_the_wait_retries_at_the_time_redis_gives() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(max_wait=5.0), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    assert coord.settle(waiter, refusal(3.0), 0.0) == []
    assert coord.next_wakeup() == 3.0
    assert coord.take(2.9) == ([], [])
    assert coord.take(3.0)[0] == [waiter]
    [(_, response)] = coord.settle(waiter, grant(), 3.0)
    assert response.granted and response.waited == 3.0


def test_a_refusal_beyond_the_wait_is_answered_at_once() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(max_wait=0.0), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    [(_, response)] = coord.settle(waiter, Decision(False, 0, 2, 4.5, 9.0), 0.0)
    assert not response.granted
    assert (response.retry_after, response.reset_after, response.remaining) == (4.5, 9.0, 0)
    assert response.reason == "rate limit reached"
    assert coord.take(0.0) == ([], [])
    assert coord.next_wakeup() == math.inf


def test_a_request_that_may_not_wait_is_still_asked_in_its_turn() -> None:
    """Asks go one at a time: a max_wait 0 request behind another's ask is not refused for
    that, but asked next, and refused only if Redis refuses it."""
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first, second = (
        coord.acquire(a, ask(max_wait=0.0), 0.0),
        coord.acquire(b, ask(max_wait=0.0), 0.0),
    )
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    coord.take(0.0)
    assert coord.poll(0.01) == []
    coord.settle(first, grant(), 0.01)
    assert coord.take(0.01)[0] == [second]
    [(_, response)] = coord.settle(second, refusal(2.0), 0.02)
    assert not response.granted and response.retry_after == 2.0
    assert coord.poll(0.6) == []  # answered already


def test_a_request_never_asked_in_time_is_refused_after_the_grace() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first, second = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(max_wait=0.1), 0.0)
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    coord.take(0.0)
    assert coord.poll(0.5) == []
    [(waiter, response)] = coord.poll(0.6)
    assert waiter is second and not response.granted


def test_a_deadline_does_not_cut_a_decision_in_flight() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(max_wait=0.5), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    assert coord.poll(1.0) == []  # past its deadline, but Redis is deciding
    [(_, response)] = coord.settle(waiter, grant(), 1.0)
    assert response.granted


def test_a_waiter_that_left_during_the_decision_gets_nothing_and_the_next_goes() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    gone, staying = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(), 0.0)
    assert isinstance(gone, Waiter) and isinstance(staying, Waiter)
    coord.take(0.0)
    coord.cancel(gone, 0.0)
    assert coord.settle(gone, grant(), 0.01) == []
    assert coord.take(0.01)[0] == [staying]


def test_without_redis_the_local_limiter_decides_and_carries_on() -> None:
    coord = remote(limit=2)
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    coord.set_remote(False)  # Redis went away with this decision in flight
    [(_, response)] = coord.settle(waiter, None, 0.0)
    assert response.granted and response.remaining == 1
    now_local = coord.acquire(client, ask(max_wait=0.0), 0.0)
    assert isinstance(now_local, AcquireResponse) and now_local.granted
    refused = coord.acquire(client, ask(max_wait=0.0), 0.0)
    assert isinstance(refused, AcquireResponse) and not refused.granted


def test_a_lifted_limit_grants_the_waiters_without_asking() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(), 0.0)
    coord.reload({}, "diophantine", 0.0)
    taken, [(answered, response)] = coord.take(0.0)
    assert taken == [] and answered is waiter and response.granted


@settings(max_examples=60)
@given(
    st.integers(1, 6),
    st.sampled_from([0.5, 1.0, 2.0]),
    st.sampled_from(["diophantine", "gcra", "fixed-window"]),
    st.lists(st.integers(1, 3), min_size=2, max_size=2),
)
def test_two_daemons_sharing_one_limiter_hold_one_global_limit(
    limit: int, window: float, algorithm: str, clients_per_daemon: list[int]
) -> None:
    """Clients on two coordinators keep asking; the shared limiter is the only authority:
    every grant delivered anywhere is one it made."""
    shared = make_limiter(algorithm, limit, window)
    daemons = [remote(limit, window, algorithm) for _ in range(2)]
    clients = [
        (daemon, daemon.connect(f"c{i}-{j}", "repeater", 0.0))
        for i, daemon in enumerate(daemons)
        for j in range(clients_per_daemon[i])
    ]
    for daemon, client in clients:
        assert isinstance(daemon.acquire(client, ask(max_wait=1e6), 0.0), Waiter)
    decided: list[float] = []
    delivered: dict[str, list[float]] = {client.id: [] for _, client in clients}
    for _ in range(300):
        now = min(daemon.next_wakeup() for daemon in daemons)
        for daemon in daemons:
            taken, answered = daemon.take(now)
            assert answered == []
            for waiter in taken:
                decision = shared.acquire(now, waiter.tokens)
                if decision.granted:
                    decided.append(now)
                for done, response in daemon.settle(waiter, decision, now):
                    assert response.granted
                    delivered[done.client.id].append(now)
                    assert isinstance(daemon.acquire(done.client, ask(max_wait=1e6), now), Waiter)
    assert sorted(t for times in delivered.values() for t in times) == decided
    if algorithm == "diophantine":
        decided.sort()
        assert all(b - a >= window for a, b in zip(decided, decided[limit:], strict=False))
