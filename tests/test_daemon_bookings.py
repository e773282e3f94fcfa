"""Protocol 1.0 as bookings, decided in-process with the clock as a parameter: Go clients that
ask once, sleep until `wait_until`, run regardless and register late or never."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from patience.daemon import ledger
from patience.daemon.bookings import decide
from patience.daemon.coordinator import Coordinator, CoordinatorError
from patience.daemon.protocol import RegisteredRequest, ScheduleRequest


def plan(resource: str, limit: int, window_ms: int, at: int, offsets: list[int]) -> ScheduleRequest:
    return ScheduleRequest(
        resource_id=resource,
        rate_limit=limit,
        window_ms=window_ms,
        request_time=at,
        retry_offsets=offsets,
    )


def most_in_a_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (sum(1 for t in ordered if a <= t < a + window) for a in ordered),
        default=0,
    )


def test_a_yes_starts_at_the_receive_time_when_the_request_time_was_truncated() -> None:
    answer = decide([], 1000, [0], 1, 3.0, wall_now=1000.9)
    assert answer.fits
    assert answer.start == 1000.9
    # The next client, asking in the same second, is booked a whole window after the first.
    second = decide(answer.times, 1000, [0], 1, 3.0, wall_now=1000.95)
    assert not second.fits
    assert second.start == pytest.approx(1003.9)


def test_refused_clients_get_successive_slots() -> None:
    coord = Coordinator({}, "diophantine", 60.0)
    starts = []
    for i in range(5):
        client = coord.connect(f"go-{i}", "patience", 0.0)
        starts.append(coord.schedule_v1(client, plan("api", 2, 10_000, 100, [0]), 0.0, 100.0).start)
    assert starts == [100.0, 100.0, 110.0, 110.0, 120.0]


def test_wait_until_is_a_whole_millisecond_at_which_the_plan_fits() -> None:
    booked = [100.0001, 100.2003]
    answer = decide(booked, 100, [0, 500], 2, 1.0, wall_now=100.3)
    assert not answer.fits
    millis = answer.start * 1000
    assert millis == round(millis)
    assert decide([*booked], 0, [0, 500], 2, 1.0, wall_now=answer.start).fits
    assert not decide(booked, 0, [0, 500], 2, 1.0, wall_now=answer.start - 0.001).fits


def test_a_plan_that_can_never_fit_is_refused_with_the_time_its_first_attempt_fits() -> None:
    """The Go default offsets 0,10m,30m under 2 per hour: three attempts in one window."""
    hour = 3_600_000
    first = decide([], 1000, [0, 600_000, 1_800_000], 2, hour / 1000, wall_now=1000.0)
    assert (first.fits, first.never, first.start, first.times) == (False, True, 1000.0, [1000.0])
    second = decide(first.times, 1000, [0, 600_000, 1_800_000], 2, 3600.0, wall_now=1000.0)
    assert second.start == 1000.0
    third = decide([1000.0, 1000.0], 1000, [0, 600_000, 1_800_000], 2, 3600.0, wall_now=1000.0)
    assert third.start == 4600.0
    assert third.times == [4600.0]


def test_the_probe_books_nothing_and_leaves_no_resource() -> None:
    coord = Coordinator({}, "diophantine", 60.0)
    client = coord.connect("go", "patience", 0.0)
    probe = plan("test-connection", 1, 1000, -62135596800, [])
    answer = coord.schedule_v1(client, probe, 0.0, 1000.0)
    assert answer.fits
    assert coord.resources == {}


def test_v1_bookings_show_in_state_and_usage() -> None:
    coord = Coordinator({}, "diophantine", 60.0)
    for i in range(3):
        client = coord.connect(f"go-{i}", "patience", 0.0)
        coord.schedule_v1(client, plan("api", 2, 10_000, 100, [0]), 0.0, 100.0)
    [state] = coord.resource_state("api", 0.0, wall_offset=100.0)
    assert state.rate_limit is not None
    assert state.rate_limit.limit == 2
    assert state.rate_limit.source.startswith("client:go-")
    assert state.rate_limit.booked == 3
    assert state.rate_limit.remaining == 0
    assert state.rate_limit.waiting == 1  # the third sleeps until 110
    assert state.tokens_granted == 3
    assert sorted(state.active_clients) == ["go-0", "go-1", "go-2"]
    assert coord.sleeping_v1(105.0) == 1
    granted, denied, waited, wait_total = coord.take_usage()[("api", "patience")]
    assert (granted, denied, waited) == (3, 1, 3)
    assert wait_total == pytest.approx(10.0)


def test_a_configured_limit_wins_over_the_go_clients_declared_one() -> None:
    from patience.config.resources import ResourceLimit
    from patience.settings import Limit

    coord = Coordinator({"api": ResourceLimit(Limit(1, 5.0))}, "diophantine", 60.0)
    client = coord.connect("go", "patience", 0.0)
    coord.schedule_v1(client, plan("api", 100, 1000, 100, [0]), 0.0, 100.0)
    answer = coord.schedule_v1(client, plan("api", 100, 1000, 100, [0]), 0.0, 100.0)
    assert answer.start == 105.0


def test_bookings_per_resource_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "MAX_V1_ENTRIES_PER_RESOURCE", 4)
    coord = Coordinator({}, "diophantine", 60.0)
    client = coord.connect("go", "patience", 0.0)
    coord.schedule_v1(client, plan("api", 10, 1000, 100, [0, 1, 2]), 0.0, 100.0)
    with pytest.raises(CoordinatorError, match="too many booked requests for api"):
        coord.schedule_v1(client, plan("api", 10, 1000, 100, [0, 1]), 0.0, 100.0)
    entries = [
        RegisteredRequest(id=f"x{i}", resource_id="api", scheduled_at=100, expires_at=200)
        for i in range(2)
    ]
    with pytest.raises(CoordinatorError, match="too many booked requests for api"):
        coord.register_v1(coord.connect("other", "patience", 0.0), entries, 0.0, 100.0)
    assert len(coord.resources["api"].bookings) == 3  # a refused request books nothing


GO_CLIENT = st.tuples(
    st.floats(min_value=0.0, max_value=30.0),  # arrival, seconds after 1000
    st.lists(st.integers(min_value=0, max_value=4000), min_size=1, max_size=4),  # offsets, ms
    st.booleans(),  # registers afterwards
)


@settings(max_examples=300, deadline=None)
@given(
    clients=st.lists(GO_CLIENT, min_size=1, max_size=25),
    limit=st.integers(min_value=1, max_value=4),
    window_ms=st.integers(min_value=500, max_value=5000),
)
def test_go_clients_never_overfill_a_window(
    clients: list[tuple[float, list[int], bool]], limit: int, window_ms: int
) -> None:
    """Each client asks once with a whole-second request time, then runs its attempts from the
    answer's start (at once, or at wait_until) and maybe registers its original plan: the
    attempts that really run never put more than the limit in any window."""
    coord = Coordinator({}, "diophantine", 3600.0)
    ran: list[float] = []
    for number, (arrival, offsets, registers) in enumerate(sorted(clients)):
        wall_now = 1000.0 + arrival
        request_time = math.floor(wall_now)
        client = coord.connect(f"go-{number}", "patience", 0.0)
        answer = coord.schedule_v1(
            client, plan("api", limit, window_ms, request_time, offsets), 0.0, wall_now
        )
        runs = answer.times  # a plan that can never fit runs only its first attempt
        assert runs[0] >= wall_now
        ran.extend(runs)
        if registers:
            entries = [
                RegisteredRequest(
                    id=f"api-{request_time}-{i}",
                    resource_id="api",
                    scheduled_at=request_time + offset // 1000,
                    expires_at=request_time + offset // 1000 + window_ms // 1000,
                )
                for i, offset in enumerate(offsets)
            ]
            coord.register_v1(client, entries, 0.0, wall_now)
    assert most_in_a_window(ran, window_ms / 1000) <= limit
