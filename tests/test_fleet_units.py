"""The fleet registry's pure parts, the clock a parameter: records (bounds, encoding, what a
reader skips), the fleet view (shares, this daemon first, truncation), the fallback share's
arithmetic and its effect on a real Coordinator's limits, and the `status --fleet` table."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from patience.config.resources import ResourceLimit
from patience.daemon.coordinator import Coordinator, Waiter
from patience.daemon.fleet import EXPIRY_BEATS, expiry
from patience.daemon.fleet_records import (
    MAX_RECORD_BYTES,
    MAX_RESOURCES,
    MAX_TOOLS,
    FleetRecord,
    ResourceUse,
    decode_record,
    encode_record,
    make_record,
    view,
)
from patience.daemon.fleet_share import divisors, resource_uses
from patience.daemon.fleet_table import fleet_lines
from patience.daemon.protocol import Acquire, AcquireResponse
from patience.settings import Limit


def use(rid: str, granted: int, active: bool = True, limit: int | None = 10) -> ResourceUse:
    return ResourceUse(rid, granted, limit, 1.0 if limit is not None else None, active)


def record(identity: str, uses: list[ResourceUse], host: str = "h", pid: int = 1) -> FleetRecord:
    return make_record(identity, host, pid, "1.0", 100.0, {"repeater": 2}, uses)


# ---- records -----------------------------------------------------------------------------


def test_a_record_describes_the_most_granted_active_resources_within_its_bounds() -> None:
    uses = [use(f"r{i:03}", granted=i) for i in range(100)] + [use("idle", 0, active=False)]
    clients = {f"tool{i}": i for i in range(30)}
    made = make_record("me", "x" * 1000, 7, "1.0", 5.0, clients, uses)
    assert len(made.resources) == MAX_RESOURCES
    assert [r.granted for r in made.resources] == list(range(99, 99 - MAX_RESOURCES, -1))
    assert made.omitted == 100 - MAX_RESOURCES  # the idle one is not in use: not counted
    assert "idle" not in {r.id for r in made.resources}
    assert len(made.clients) == MAX_TOOLS and made.clients["tool29"] == 29
    assert len(made.host) == 256
    assert len(encode_record(made)) <= MAX_RECORD_BYTES


@given(
    st.lists(
        st.tuples(st.text(min_size=1, max_size=300), st.integers(0, 1 << 40), st.booleans()),
        max_size=80,
    ),
    st.dictionaries(st.text(max_size=300), st.integers(0, 10**6), max_size=40),
    st.text(max_size=400),
)
def test_every_record_made_is_read_back_as_made(
    uses: list[tuple[str, int, bool]], clients: dict[str, int], host: str
) -> None:
    made = make_record("id", host, 1, "1.0", 1.0, clients, [use(r, g, a) for r, g, a in uses])
    data = encode_record(made)
    assert len(data) <= MAX_RECORD_BYTES
    assert decode_record(data) == made


def test_a_reader_skips_what_is_not_a_record_or_too_long() -> None:
    good = record("a", [use("api", 3)])
    assert decode_record(b"not json") is None
    assert decode_record(b'{"id": "a"}') is None  # fields missing
    assert decode_record(b"x" * (MAX_RECORD_BYTES + 1)) is None
    too_many = msgspec.structs.replace(good, resources=good.resources * (MAX_RESOURCES + 1))
    assert decode_record(msgspec.json.encode(too_many)) is None
    negative = encode_record(good).replace(b'"granted":3', b'"granted":-3')
    assert decode_record(negative) is None
    # A later version's extra fields are ignored.
    later = encode_record(good)[:-1] + b',"zone":"eu-west"}'
    assert decode_record(later) == good


# ---- the view ----------------------------------------------------------------------------


def test_the_view_puts_this_daemon_first_and_shares_each_resource() -> None:
    records = [
        record("b", [use("api", 6), use("db", 0)], host="beta"),
        record("a", [use("api", 2)], host="alpha"),
        record("me", [use("api", 4), use("db", 0)], host="zeta"),
    ]
    shown = view(records, "me", total=3, read=3)
    daemons = shown["daemons"]
    assert isinstance(daemons, list)
    assert [d["id"] for d in daemons] == ["me", "a", "b"]
    assert [d["self"] for d in daemons] == [True, False, False]
    shares = {d["id"]: {r["id"]: r["share"] for r in d["resources"]} for d in daemons}
    assert shares["me"]["api"] == 4 / 12 and shares["a"]["api"] == 2 / 12
    assert shares["b"]["api"] == 6 / 12
    assert shares["me"]["db"] is None  # nobody was granted any: no share to speak of
    assert (shown["total"], shown["truncated"], shown["skipped"]) == (3, False, 0)


def test_the_view_says_when_fewer_daemons_were_read_than_live() -> None:
    shown = view([record("me", [])], "me", total=1_000_000, read=2, skipped=1)
    assert shown["truncated"] is True and shown["total"] == 1_000_000
    assert shown["skipped"] == 1


@given(st.lists(st.lists(st.integers(0, 1000), min_size=1, max_size=3), min_size=1, max_size=8))
def test_the_shares_of_a_resource_add_up_to_one(granted: list[list[int]]) -> None:
    records = [
        record(f"d{i}", [use(f"r{j}", g) for j, g in enumerate(row)])
        for i, row in enumerate(granted)
    ]
    shown = view(records, "d0", len(records), len(records))
    totals: dict[str, float] = {}
    for daemon in shown["daemons"]:  # type: ignore[attr-defined]
        for resource in daemon["resources"]:
            if resource["share"] is not None:
                totals[resource["id"]] = totals.get(resource["id"], 0.0) + resource["share"]
    assert all(abs(total - 1.0) < 1e-9 for total in totals.values())


def test_a_record_expires_three_heartbeats_and_a_second_after_its_last_renewal() -> None:
    assert EXPIRY_BEATS == 3
    assert expiry(1.0) == 4.0 and expiry(0.2) == 1.6


# ---- the fallback share ------------------------------------------------------------------


@given(
    st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 100)),
    st.sets(st.sampled_from("abcdef")),
)
def test_the_divisor_counts_this_daemon_once_and_is_at_least_one(
    counts: dict[str, int], active: set[str]
) -> None:
    shares = divisors(counts, active)
    for rid, count in counts.items():
        assert shares[rid] >= 1
        assert shares[rid] == max(1, count if rid in active else count + 1)


def coordinator(limit: int = 12, window: float = 2.0) -> Coordinator:
    return Coordinator({"api": ResourceLimit(Limit(limit, window))}, "diophantine", 60.0)


def take(coord: Coordinator, now: float, client: str = "c") -> bool:
    answer = coord.acquire(coord.connect(client, "repeater", now), Acquire("api", 1, 0.0), now)
    assert isinstance(answer, AcquireResponse)
    return answer.granted


def test_while_redis_is_away_the_limit_is_divided_among_the_daemons_of_the_last_view() -> None:
    coord = coordinator()
    assert take(coord, 0.0)  # the resource is tracked, one grant counted here
    coord.fleet_share.daemons = {"api": 3}
    coord.set_remote(True)  # Redis reachable: the whole limit, decided there
    spec = coord.limit_of("api")
    assert spec is not None and spec.limit.count == 12
    coord.set_remote(False)  # Redis lost: a third of it, from this daemon's own grants
    spec = coord.limit_of("api")
    assert spec is not None and spec.limit.count == 4
    assert spec.source == "config:api, shared by 3 daemons"
    assert [take(coord, 0.1 + i / 100) for i in range(4)] == [True, True, True, False]
    assert take(coord, 2.05)  # the first grant left the window
    coord.set_remote(True)  # Redis back: the whole limit again
    spec = coord.limit_of("api")
    assert spec is not None and spec.limit.count == 12


def test_waiters_held_back_by_a_share_ask_redis_at_once_when_it_is_back() -> None:
    coord = coordinator()
    assert take(coord, 0.0)
    coord.fleet_share.daemons = {"api": 3}
    coord.set_remote(False)
    assert [take(coord, 0.1) for _ in range(3)] == [True] * 3  # the share, 4, is used
    client = coord.connect("w", "repeater", 0.2)
    waiter = coord.acquire(client, Acquire("api", 1, 10.0), 0.2)
    assert isinstance(waiter, Waiter)
    assert coord.next_wakeup() >= 2.0  # locally: when the first grant leaves the window
    coord.set_remote(True)
    assert coord.next_wakeup() <= 0.3
    batches, _ = coord.take(0.3)  # asked of Redis now, not in 1.8 s
    assert [w for batch in batches for w in batch] == [waiter]


def test_the_share_is_at_least_one_token_and_a_lone_daemon_keeps_the_whole_limit() -> None:
    coord = coordinator(limit=2)
    assert take(coord, 0.0)
    coord.fleet_share.daemons = {"api": 5}
    coord.set_remote(False)
    spec = coord.limit_of("api")
    assert spec is not None and spec.limit.count == 1
    alone = coordinator()
    assert take(alone, 0.0)
    alone.fleet_share.daemons = {"api": 1}
    alone.set_remote(False)
    spec = alone.limit_of("api")
    assert spec is not None and spec.limit.count == 12 and spec.source == "config:api"


def test_a_resource_tracked_during_the_outage_gets_its_share_when_applied_again() -> None:
    coord = coordinator()
    coord.fleet_share.daemons = {"api": 2}
    coord.set_remote(False)
    assert take(coord, 0.0)  # tracked now, with the whole limit
    coord.fleet_share.apply(False)  # the fleet registry's next heartbeat
    spec = coord.limit_of("api")
    assert spec is not None and spec.limit.count == 6


def test_resource_uses_count_the_grants_of_the_last_window_and_who_asked() -> None:
    coord = coordinator(limit=3, window=2.0)
    assert [take(coord, t) for t in (0.0, 0.5, 1.0, 1.5)] == [True, True, True, False]
    (now,) = resource_uses(coord.resources, 1.6)
    assert (now.id, now.granted, now.limit, now.window, now.active) == ("api", 3, 3, 2.0, True)
    (later,) = resource_uses(coord.resources, 2.2)  # the first grant left the window
    assert later.granted == 2 and later.active
    (gone,) = resource_uses(coord.resources, 10.0)
    assert gone.granted == 0 and not gone.active


# ---- the table ---------------------------------------------------------------------------


def test_the_fleet_table_lists_each_daemon_with_its_clients_and_shares() -> None:
    records = [
        make_record(
            "me", "alpha", 11, "1.0", 40.0, {"repeater": 2, "patience": 1}, [use("api", 3)]
        ),
        make_record("b", "beta", 22, "1.0", 70.0, {}, [use("api", 1)]),
    ]
    reply = {**view(records, "me", 2, 2), "as_of": 100.0, "fresh": True}
    head, header, mine, other = fleet_lines(reply, 100.0)
    assert head.startswith("fleet: 2 live daemons (read ")
    assert header.split() == ["HOST", "PID", "VERSION", "UP", "CLIENTS", "RESOURCES"]
    assert mine.startswith("*") and "alpha" in mine and "11" in mine and " 1m " in mine
    assert "patience 1, repeater 2" in mine
    assert "api: 3 of 10 per 1s (75% of the fleet's)" in mine
    assert "beta" in other and "api: 1 of 10 per 1s (25% of the fleet's)" in other
    assert other.split()[4] == "-"  # no clients


def test_the_fleet_table_says_when_it_is_cut_or_stale() -> None:
    reply = {**view([record("me", [])], "me", 500, 1), "as_of": None, "fresh": False}
    head = fleet_lines(reply, 0.0)[0]
    assert "500 live daemons (read never)" in head
    assert "showing the 1 most recently renewed" in head
    assert "not renewed since: is Redis reachable?" in head
