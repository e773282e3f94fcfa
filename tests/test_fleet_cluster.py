"""The fleet registry on a real three-master Redis Cluster (`redis_cluster = true`): two daemons
list each other, and every key of the registry is in the slot of its hash tag `{fleet}`, on
the master serving it."""

from __future__ import annotations

import time

import pytest

from daemon_support import running_many, short_dir
from patience.daemon.fleet import PREFIX
from redis_ha_support import cluster_set
from test_fleet_daemons import FAST, ask, fleet_after, pid
from test_redis_cluster import config


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_the_fleet_on_a_cluster_lists_every_daemon_with_its_keys_in_one_slot() -> None:
    with (
        short_dir() as directory,
        cluster_set(directory) as cluster,
        running_many(config(cluster), 2, FAST) as (first, second),
    ):
        deadline = time.monotonic() + 30.0
        while True:  # until both are seen active on the three resources at once
            for daemon in (first, second):
                with daemon.client("repeater", f"c-{pid(daemon)}") as client:
                    for resource in ("api-0", "api-1", "api-2"):
                        assert client.acquire(resource, max_wait=5.0).granted
            reply = fleet_after(second, time.time())
            used = [len(d["resources"]) for d in reply["daemons"]]
            keys = [k for k in cluster.keys() if k.startswith(PREFIX)]  # noqa: SIM118 (no dict)
            if reply["total"] == 2 and used == [3, 3] and len(keys) == 5:
                break
            assert time.monotonic() < deadline, (reply, keys)
        assert {d["pid"] for d in reply["daemons"]} == {pid(first), pid(second)}
        # members, records, and an active set per resource: all in the slot of {fleet}.
        slot = cluster.keyslot(PREFIX)
        assert {cluster.keyslot(k) for k in keys} == {slot}
        holder = cluster.owner(slot)
        for node in cluster.nodes:
            with node.client() as client:
                found = client.keys(PREFIX + "*")
            assert bool(found) == (node.port == holder), (node.port, found)
        assert "error" not in ask(first, {"type": "fleet"})["type"]
