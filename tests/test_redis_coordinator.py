"""The coordinator's remote admission (the Redis backend) as pure code, the clock a parameter:
requests queue, `take` hands out one batch per resource at a time, `settle` applies the
decisions (up to the first refusal: the rest stay queued); deadlines, departures, the local
fallback and the local bound on remote asks; batches grant as asking one at a time would.

Two coordinators sharing one limiter object stand in for two daemons sharing Redis (the Redis
scripts decide exactly as the Python limiters: tests/test_redis_algorithms.py)."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from patience.config.resources import ResourceLimit
from patience.daemon.coordinator import Coordinator, Waiter
from patience.daemon.protocol import Acquire, AcquireResponse
from patience.ratelimit.algorithms import Decision, Limiter, make_limiter
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


def sequential(limiter: Limiter, batch: list[Waiter], now: float) -> list[Decision]:
    """What a Redis script decides on a batch: each request in turn, up to the first refusal."""
    decisions = []
    for waiter in batch:
        decisions.append(limiter.acquire(now, waiter.tokens))
        if not decisions[-1].granted:
            break
    return decisions


def test_every_limited_request_queues_and_is_taken_once() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first, second = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(), 0.0)
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    assert coord.next_wakeup() == 0.0
    taken, answered = coord.take(0.0)
    assert taken == [[first, second]] and answered == []  # one batch, in queue order
    assert coord.take(0.0) == ([], [])  # one batch in flight per resource
    assert coord.poll(0.0) == []  # nothing is served locally while remote
    # Only the first was decided (as when Redis stops at a refusal): the second stays queued.
    [(waiter, response)] = coord.settle([first, second], [grant(remaining=7)], 0.001)
    assert waiter is first and response.granted and response.remaining == 7
    assert coord.take(0.001) == ([[second]], [])


def test_grants_from_redis_are_counted_locally_and_bound_what_is_asked() -> None:
    coord = remote(limit=2)
    client = coord.connect("a", "repeater", 0.0)
    for at in (0.0, 1.0):
        waiter = coord.acquire(client, ask(), at)
        assert isinstance(waiter, Waiter)
        [[taken]], _ = coord.take(at)
        assert coord.settle([taken], [grant()], at)[0][1].granted
    # Two tokens this daemon itself holds: the third cannot fit before 10s, Redis or not.
    refused = coord.acquire(client, ask(max_wait=5.0), 2.0)
    assert isinstance(refused, AcquireResponse) and not refused.granted
    assert refused.retry_after == 8.0
    waiter = coord.acquire(client, ask(max_wait=9.0), 2.0)
    assert isinstance(waiter, Waiter) and coord.next_wakeup() == 10.0
    assert coord.take(9.9) == ([], [])
    assert coord.take(10.0)[0] == [[waiter]]


def test_a_refusal_within_the_wait_retries_at_the_time_redis_gives() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(max_wait=5.0), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    assert coord.settle([waiter], [refusal(3.0)], 0.0) == []
    assert coord.next_wakeup() == 3.0
    assert coord.take(2.9) == ([], [])
    assert coord.take(3.0)[0] == [[waiter]]
    [(_, response)] = coord.settle([waiter], [grant()], 3.0)
    assert response.granted and response.waited == 3.0


def test_a_refusal_beyond_the_wait_is_answered_at_once() -> None:
    coord = remote()
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(max_wait=0.0), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    [(_, response)] = coord.settle([waiter], [Decision(False, 0, 2, 4.5, 9.0)], 0.0)
    assert not response.granted
    assert (response.retry_after, response.reset_after, response.remaining) == (4.5, 9.0, 0)
    assert response.reason == "rate limit reached"
    assert coord.take(0.0) == ([], [])
    assert coord.next_wakeup() == math.inf


def test_a_request_that_may_not_wait_is_still_asked_in_its_turn() -> None:
    """A max_wait 0 request behind another's ask is not refused for that, but asked next
    (in the same batch, or the next one), and refused only if Redis refuses it."""
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first, second = (
        coord.acquire(a, ask(max_wait=0.0), 0.0),
        coord.acquire(b, ask(max_wait=0.0), 0.0),
    )
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
    coord.take(0.0)
    assert coord.poll(0.01) == []
    coord.settle([first, second], [grant()], 0.01)
    assert coord.take(0.01)[0] == [[second]]
    [(_, response)] = coord.settle([second], [refusal(2.0)], 0.02)
    assert not response.granted and response.retry_after == 2.0
    assert coord.poll(0.6) == []  # answered already


def test_one_batch_grants_up_to_its_first_refusal() -> None:
    coord = remote(limit=3)
    clients = [coord.connect(name, "repeater", 0.0) for name in "abcd"]
    waiters = [coord.acquire(client, ask(max_wait=0.0), 0.0) for client in clients]
    [batch], _ = coord.take(0.0)
    assert batch == waiters
    assert coord.poll(0.01) == []  # asked: not timed out
    answers = coord.settle(batch, [grant(2), grant(1), grant(0), refusal(2.0)], 0.01)
    assert [(w, r.granted) for w, r in answers] == [(w, i < 3) for i, w in enumerate(waiters)]
    assert answers[3][1].retry_after == 2.0
    assert coord.take(0.01) == ([], [])


def test_the_rest_of_a_batch_is_refused_at_once_if_its_wait_passed_unasked() -> None:
    """Behind a refusal the batch's other waiters were not asked; one whose wait (and grace)
    ended meanwhile is refused when the batch comes back, one with time left stays queued."""
    coord = remote()
    a, b, c = (coord.connect(name, "repeater", 0.0) for name in "abc")
    head = coord.acquire(a, ask(), 0.0)
    late = coord.acquire(b, ask(max_wait=0.1), 0.0)
    patient = coord.acquire(c, ask(), 0.0)
    [batch], _ = coord.take(0.0)
    assert batch == [head, late, patient]
    assert coord.poll(0.7) == []  # all three are being asked
    [(waiter, response)] = coord.settle(batch, [refusal(1.0)], 0.7)
    assert waiter is late and not response.granted
    assert coord.take(1.7)[0] == [[head, patient]]


def test_a_request_never_asked_in_time_is_refused_after_the_grace() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    first = coord.acquire(a, ask(), 0.0)
    coord.take(0.0)  # the first is being asked when the second comes
    second = coord.acquire(b, ask(max_wait=0.1), 0.0)
    assert isinstance(first, Waiter) and isinstance(second, Waiter)
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
    [(_, response)] = coord.settle([waiter], [grant()], 1.0)
    assert response.granted


def test_a_waiter_that_left_during_the_decision_gets_nothing_and_the_next_goes() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    gone, staying = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(), 0.0)
    assert isinstance(gone, Waiter) and isinstance(staying, Waiter)
    coord.take(0.0)
    coord.cancel(gone, 0.0)
    assert coord.settle([gone, staying], [grant()], 0.01) == []
    assert coord.take(0.01)[0] == [[staying]]
    [(waiter, response)] = coord.settle([staying], [grant()], 0.02)
    assert waiter is staying and response.granted


def test_a_waiter_that_left_does_not_stop_its_batch() -> None:
    coord = remote()
    a, b = coord.connect("a", "repeater", 0.0), coord.connect("b", "repeater", 0.0)
    gone, staying = coord.acquire(a, ask(), 0.0), coord.acquire(b, ask(), 0.0)
    [batch], _ = coord.take(0.0)
    coord.cancel(gone, 0.0)
    [(waiter, response)] = coord.settle(batch, [grant(), grant()], 0.01)
    assert waiter is staying and response.granted


def test_without_redis_the_local_limiter_decides_and_carries_on() -> None:
    coord = remote(limit=2)
    client = coord.connect("a", "repeater", 0.0)
    waiter = coord.acquire(client, ask(), 0.0)
    assert isinstance(waiter, Waiter)
    coord.take(0.0)
    coord.set_remote(False)  # Redis went away with this decision in flight
    [(_, response)] = coord.settle([waiter], None, 0.0)
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
            for batch in taken:
                decisions = sequential(shared, batch, now)
                decided += [now for decision in decisions if decision.granted]
                for done, response in daemon.settle(batch, decisions, now):
                    assert response.granted
                    delivered[done.client.id].append(now)
                    assert isinstance(daemon.acquire(done.client, ask(max_wait=1e6), now), Waiter)
    assert sorted(t for times in delivered.values() for t in times) == decided
    if algorithm == "diophantine":
        decided.sort()
        assert all(b - a >= window for a, b in zip(decided, decided[limit:], strict=False))


@st.composite
def queues(draw: st.DrawFn) -> tuple[Limit, list[tuple[str, int, float]]]:
    """A limit and requests (client, tokens, seconds into the run) that mostly overlap."""
    limit = draw(st.integers(1, 8))
    window = draw(st.sampled_from([0.05, 0.5, 1.0]))
    algorithm = draw(st.sampled_from(["diophantine", "gcra", "fixed-window"]))
    requests = draw(
        st.lists(
            st.tuples(
                st.sampled_from("abcde"),
                st.integers(1, limit),
                st.sampled_from([0.0, 0.0, 0.01, 0.03, 0.2]),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return Limit(limit, window, algorithm), requests


def grants_in_order(
    limit: Limit, requests: list[tuple[str, int, float]], one_at_a_time: bool
) -> list[tuple[str, float, bool, float]]:
    """Drive a remote coordinator whose batches a Python limiter decides; with
    `one_at_a_time` only the first of each batch is decided (asking one request per call).
    Every answer delivered: (client, time, granted, retry after)."""
    coord = remote(limit.count, limit.window, limit.algorithm)
    shared = make_limiter(limit.algorithm, limit.count, limit.window)
    clients = {name: coord.connect(name, "repeater", 0.0) for name, _, _ in requests}
    arrivals = sorted((at, i) for i, (_, _, at) in enumerate(requests))
    answers: list[tuple[str, float, bool, float]] = []
    now = 0.0
    for _ in range(2000):
        while arrivals and arrivals[0][0] <= now:
            name, tokens, _ = requests[arrivals.pop(0)[1]]
            waiter = coord.acquire(clients[name], ask(tokens, max_wait=0.3), now)
            if isinstance(waiter, AcquireResponse):
                answers.append((name, now, waiter.granted, waiter.retry_after))
        resolved = coord.poll(now)
        taken, due = coord.take(now)
        resolved += due
        for batch in taken:
            decisions = sequential(shared, batch[:1] if one_at_a_time else batch, now)
            resolved += coord.settle(batch, decisions, now)
        answers += [(w.client.id, now, r.granted, r.retry_after) for w, r in resolved]
        following = min(coord.next_wakeup(), arrivals[0][0] if arrivals else math.inf)
        if following == math.inf:
            return answers
        now = max(now, following)
    raise AssertionError("the coordinator never finished")


@settings(max_examples=200)
@given(queues())
def test_batches_grant_exactly_as_asking_one_request_at_a_time(
    workload: tuple[Limit, list[tuple[str, int, float]]],
) -> None:
    """The same requests through batches and one per call: the same answers, to the same
    clients, at the same times, in the same order (round-robin turns and fair shares
    included)."""
    limit, requests = workload
    batched = grants_in_order(limit, requests, one_at_a_time=False)
    assert batched == grants_in_order(limit, requests, one_at_a_time=True)
    assert len(batched) == len(requests)
