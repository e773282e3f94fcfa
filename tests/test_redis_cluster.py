"""Real daemons on a real three-master Redis Cluster (`redis_cluster = true`): resources whose
keys land on different masters, each with its own algorithm, hold their limits across two
daemons; every key of a resource is in that resource's hash slot, on the master serving it;
the learned limits' keys share a slot, so their MULTI/EXEC works on a cluster. A master lost
is one outage; with replicas, the cluster's own failover brings the daemons back."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from daemon_support import Daemon, finish, running_many, short_dir, worker
from integration_support import most_in_window
from patience.daemon.learned_share import HASH, VERSION
from patience.ratelimit.redis_store import PREFIX
from redis_ha_support import ClusterSet, cluster_set
from redis_support import TAKE

LIMIT, WINDOW, ASKED = 4, 2.0, 8  # each client asks ASKED; two daemons, one client each
# Resource -> (algorithm, the most starts any window may hold): the sliding log holds the limit
# in every window; the fixed window in its own windows (so twice it across a boundary); GCRA
# lets a full burst be followed by its steady rate.
RESOURCES = {
    "api-0": ("diophantine", LIMIT),
    "api-1": ("fixed-window", 2 * LIMIT),
    "api-2": ("gcra", 2 * LIMIT - 1),
}


def config(cluster: ClusterSet) -> str:
    limits = "\n".join(
        f'"{name}" = {{ limit = {LIMIT}, window = "{WINDOW}s", algorithm = "{algorithm}" }}'
        for name, (algorithm, _) in RESOURCES.items()
    )
    return (
        f'[daemon]\nbackend = "redis"\nredis_url = "{cluster.url}"\nredis_cluster = true\n'
        f"[rate_limiting.resources]\n{limits}\n"
    )


@contextlib.contextmanager
def daemons(
    text: str, count: int, intervals: dict[str, float] | None = None
) -> Iterator[list[Daemon]]:
    with running_many(text, count, intervals) as started:
        for daemon in started:  # a daemon decides on its own until its first call answers
            deadline = time.monotonic() + 20.0
            while "rate limits are kept in Redis" not in daemon.log_text():
                assert time.monotonic() < deadline, daemon.log_text()
                time.sleep(0.02)
        yield started


def status(daemon: Daemon) -> dict[str, object]:
    with daemon.client("patience", f"status-{time.monotonic_ns()}") as client:
        return client.status()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_limits_hold_per_resource_with_each_resource_in_one_slot() -> None:
    with short_dir() as directory, cluster_set(directory) as cluster:
        owners = {name: cluster.owner(cluster.keyslot(f"{{{name}}}")) for name in RESOURCES}
        assert len(set(owners.values())) == 3  # one resource on each master
        with daemons(config(cluster), 2) as pair:
            start = time.time() + 0.5
            procs = {
                (name, number): worker(
                    TAKE, daemon.socket, f"c{number}-{name}", name, str(ASKED), str(start)
                )
                for name in RESOURCES
                for number, daemon in enumerate(pair)
            }
            outputs = dict(zip(procs, finish(list(procs.values())), strict=True))
            shown = [status(daemon) for daemon in pair]
            logs = [daemon.log_text() for daemon in pair]
        held = {key: node.port for node in cluster.nodes for key in node.client().keys("*")}
        tags = {key: key.partition("{")[2].partition("}")[0] for key in held}
        owners |= {tag: cluster.owner(cluster.keyslot(f"{{{tag}}}")) for tag in tags.values()}
        learned_slots = {cluster.keyslot(HASH), cluster.keyslot(VERSION)}
    for name, (_, most) in RESOURCES.items():
        starts = sorted(float(t) for number in range(2) for t in outputs[(name, number)].split())
        assert len(starts) == 2 * ASKED
        assert most_in_window(starts, WINDOW * 0.95) <= most, (name, starts)
        assert starts[-1] - starts[0] >= 2 * WINDOW * 0.95, (name, starts)
    # Every key is hash-tagged (a resource's, or the fleet's), so each script and transaction
    # stays in one slot; each is on the master serving its tag's slot.
    assert all(tags.values()), tags
    for key, port in held.items():
        assert port == owners[tags[key]], (key, port)
    for name in RESOURCES:
        assert any(key.startswith(f"{PREFIX}{{{name}}}:") for key in held), (name, held)
    assert len(learned_slots) == 1
    for log in logs:  # nothing failed on the way: no error reply, no dead task
        assert "WARNING" not in log and "ERROR" not in log and "Traceback" not in log, log
    for state in shown:
        assert state["backend"] == "redis" and state["redis_url"] == cluster.url
        assert "redis_unreachable_since" not in state


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_master_lost_is_an_outage_for_every_resource() -> None:
    """The ping asks every master: a master killed is seen within a ping or so, as one
    outage, even by a daemon with no request for that master's slots."""
    with (
        short_dir() as directory,
        cluster_set(directory) as cluster,
        daemons(config(cluster), 1) as (daemon,),
    ):
        with daemon.client("patience", "probe") as client:
            assert client.acquire("api-0").granted
        assert "redis_unreachable_since" not in status(daemon)
        quiet = cluster.owner(cluster.keyslot("{api-1}"))
        next(node for node in cluster.nodes if node.port == quiet).kill()
        killed = time.monotonic()
        while "redis_unreachable_since" not in status(daemon):
            assert time.monotonic() - killed < 10.0, daemon.log_text()
            time.sleep(0.05)
        time.sleep(1.5)  # more pings fail: still one line
        log = daemon.log_text()
    assert log.count("cannot use Redis at") == 1, log
    assert "Traceback" not in log, log


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_cluster_failover_is_one_outage_and_the_limit_holds_either_side() -> None:
    """Three masters with a replica each; clients on two daemons take 20 per 2 s of a
    resource whose master is killed mid-run: its replica takes over (node timeout 2 s), the
    daemons are global again without restart, and the limit holds before and after."""
    limit = '[rate_limiting.resources]\n"api-0" = { limit = 20, window = "2s" }\n'
    with (
        short_dir() as directory,
        cluster_set(directory, replicas=1) as cluster,
        daemons(config(cluster).partition("[rate")[0] + limit, 2, {"redis_watch": 0.2}) as pair,
    ):
        old = cluster.owner(cluster.keyslot("{api-0}"))
        start = time.time() + 0.3
        procs = [
            worker(TAKE, daemon.socket, f"c{number}", "api-0", "70", str(start))
            for number, daemon in enumerate(pair)
        ]
        time.sleep(2.3)
        killed = time.time()
        next(node for node in cluster.nodes if node.port == old).kill()
        for daemon in pair:
            wait_status(daemon, unreachable=True)
        back = max(wait_status(daemon, unreachable=False) for daemon in pair)
        outputs = finish(procs)
        assert cluster.owner(cluster.keyslot("{api-0}")) != old  # the replica took over
        logs = [daemon.log_text() for daemon in pair]
    starts = sorted(float(t) for out in outputs for t in out.split())
    print(f"cluster failover: {back - killed:.2f}s of local limits")
    assert len(starts) == 140
    for log in logs:
        assert log.count("cannot use Redis at") == 1, log
        assert log.count("is back: rate limits are global again") == 1, log
    # Each start is timed when its grant arrives, late by up to 0.2s on a loaded machine:
    # windows 0.25s shorter are counted, and after the return from when starts granted
    # locally just before it have surely arrived.
    assert len([t for t in starts if t < killed]) >= 20, (killed, starts)
    assert most_in_window([t for t in starts if t < killed], 1.75) <= 20, starts
    assert most_in_window([t for t in starts if t >= back + 0.3], 1.75) <= 20, starts
    assert len([t for t in starts if t >= back + 0.3]) >= 40, (back, starts)


def wait_status(daemon: Daemon, unreachable: bool) -> float:
    """Wait until the daemon is (not) on local limits; the wall time it was seen so."""
    deadline = time.monotonic() + 30.0
    while ("redis_unreachable_since" in status(daemon)) != unreachable:
        assert time.monotonic() < deadline, daemon.log_text()
        time.sleep(0.02)
    return time.time()
