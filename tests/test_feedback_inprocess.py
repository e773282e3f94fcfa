"""The daemon's side of throttle feedback in-process, with the clock as a parameter: the
learner over real Resources (pause, learned limit in force, clean windows judged from the
demand, a forgotten resource coming back with what it learned), adapt_to_load from an
injected load reading, the learned limits through the state file's form."""

from __future__ import annotations

import math

from patience.config.resources import ResourceLimit
from patience.daemon.coordinator import Coordinator
from patience.daemon.feedback import FeedbackService
from patience.daemon.protocol import Acquire
from patience.ratelimit.learned import Learning
from patience.settings import Limit


def coordinator(**entries: ResourceLimit) -> Coordinator:
    return Coordinator({k.replace("_", ":"): v for k, v in entries.items()}, "diophantine", 60.0)


def take(coord: Coordinator, client: str, resource: str, now: float, wait: float = 0.0) -> bool:
    """One acquire of `client` (connected once), declaring 100 per 1s."""
    known = coord.clients.get(client)
    result = coord.acquire(
        known if known is not None else coord.connect(client, "repeater", now),
        Acquire(resource_id=resource, limit=100, window=1.0, max_wait=wait),
        now,
    )
    return getattr(result, "granted", False)


def test_pause_then_clean_windows_raise_the_learned_limit() -> None:
    coord = coordinator()
    for i in range(30):
        assert take(coord, "a", "api:x", i * 0.01)
    resource, decreased = coord.throttled(coord.clients["a"], "api:x", 1.0, 0.3)
    assert decreased and resource.spec is not None and resource.spec.limit.count == 15
    assert not take(coord, "b", "api:x", 0.5)  # another client: paused
    assert resource.paused_until == 1.3
    coord.tick_learned(1.35)  # the pause is over
    assert resource.paused_until == -math.inf and take(coord, "b", "api:x", 1.35)
    counts = []
    now = 1.35
    for _ in range(24):  # demand above the limit all along: clean windows climb back
        now += 0.5
        for _ in range(40):
            take(coord, "a", "api:x", now)
        coord.tick_learned(now)
        counts.append(resource.spec.limit.count)
    changes = [c for i, c in enumerate(counts) if i == 0 or c != counts[i - 1]]
    # half way to bad - 1 = 29 each window, held there 5 windows, then probing: +1, +2
    assert changes == [15, 22, 25, 27, 28, 29, 30, 32], counts


def test_a_window_of_no_demand_raises_nothing() -> None:
    coord = coordinator()
    take(coord, "a", "api:x", 0.0)
    resource, _ = coord.throttled(coord.clients["a"], "api:x", None, 0.0)
    before = resource.spec.limit.count if resource.spec else None
    for second in range(1, 6):
        coord.tick_learned(float(second))
    assert resource.spec is not None and resource.spec.limit.count == before


def test_a_forgotten_resource_comes_back_with_what_it_learned() -> None:
    coord = coordinator()
    for i in range(10):
        take(coord, "a", "api:x", i * 0.01)
    coord.throttled(coord.clients["a"], "api:x", None, 0.1)
    coord.disconnect(coord.clients["a"], 0.2)
    for second in range(2, 400):  # idle long after client_ttl: forgotten
        coord.expire(float(second), 1e9 + second)
    assert "api:x" not in coord.resources and "api:x" in coord.learned
    take(coord, "b", "api:x", 500.0)
    state = coord.resource_state("api:x", 500.0, 0.0)[0].rate_limit
    assert state is not None and state.limit == 5 and state.source == "learned:client:b"


def test_adapt_to_load_scales_the_limit_by_the_hosts_load() -> None:
    entry = ResourceLimit(Limit(100, 1.0), None, Learning(adapt_to_load=True, floor=10))
    coord = coordinator(database_local=entry)
    load: list[float | None] = [2.0]
    service = FeedbackService(coord, lambda: load[0])
    take(coord, "a", "database:local", 0.0)
    resource = coord.resources["database:local"]
    service.adapt_to_load(1.0)
    assert resource.spec is not None and resource.spec.limit.count == 50
    load[0] = 20.0
    service.adapt_to_load(2.0)
    assert resource.spec.limit.count == 10  # the floor
    load[0] = 0.4  # below target: all of it
    service.adapt_to_load(3.0)
    assert resource.spec.limit.count == 100
    load[0] = None  # no reading: all of it
    service.adapt_to_load(4.0)
    assert resource.spec.limit.count == 100


def test_learned_limits_through_the_state_files_form() -> None:
    coord = coordinator()
    for i in range(40):
        take(coord, "a", "api:x", i * 0.01)
    coord.throttled(coord.clients["a"], "api:x", None, 0.5)
    saved = FeedbackService(coord, lambda: None).saved()
    assert [s.id for s in saved] == ["api:x"]
    fresh = coordinator()
    FeedbackService(fresh, lambda: None).restore(saved, 10.0)
    take(fresh, "b", "api:x", 10.0)
    assert fresh.resources["api:x"].spec is not None
    assert fresh.resources["api:x"].spec.limit.count == 20
