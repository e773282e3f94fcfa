"""The fleet registry with real daemons on one real redis-server: three daemons list each other
(`patience-daemon status --fleet`, the `fleet` query, GET /api/v1/fleet) with their clients and
shares; a stopped daemon leaves at once, a killed one once its record expires, and nothing is
left in Redis after; the memory backend says there is no fleet. And the fallback share: real
rpr clients on three daemons, Redis killed under them: the fleet together keeps near the limit
(not three times it), and when Redis is back the limit is decided there again."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from daemon_support import BIN, Daemon, isolated_env, run_daemon, running_many, short_dir
from http_support import wait_for_url
from integration_support import most_in_window
from patience.daemon.fleet import PREFIX
from patience.daemon.handlers import NO_FLEET
from redis_support import RedisServer, redis_server

BEAT = 0.2  # the daemons' heartbeat here (lifecycle.Intervals.fleet_heartbeat)
FAST = {"fleet_heartbeat": BEAT, "redis_watch": BEAT}


def config(server: RedisServer, limits: str) -> str:
    return (
        f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\nredis_clock = "redis"\n'
        f"[rate_limiting.resources]\n{limits}\n"
    )


def daemons(
    text: str, count: int, http: int = -1
) -> contextlib.AbstractContextManager[list[Daemon]]:
    """`count` started daemons with short heartbeats; the one at index `http` serves HTTP."""
    return running_many(
        text, count, FAST, args=lambda index: ("--http", "127.0.0.1:0") if index == http else ()
    )


def ask(daemon: Daemon, message: dict[str, object]) -> dict[str, Any]:
    with daemon.raw() as raw:
        reply: dict[str, Any] = raw.ask(json.dumps(message))
        return reply


def fleet_after(daemon: Daemon, moment: float, timeout: float = 10.0) -> dict[str, Any]:
    """The daemon's view of the fleet, read after `moment` (Unix seconds)."""
    deadline = time.monotonic() + timeout
    while True:
        reply = ask(daemon, {"type": "fleet"})
        assert reply["type"] == "fleet_response", reply
        if reply["as_of"] is not None and reply["as_of"] > moment:
            return reply
        assert time.monotonic() < deadline, f"no view read after {moment}: {reply}"
        time.sleep(0.05)


def pids(reply: dict[str, Any]) -> set[int]:
    return {d["pid"] for d in reply["daemons"]}


def pid(daemon: Daemon) -> int:
    assert daemon.proc is not None
    return daemon.proc.pid


def take(daemon: Daemon, resource: str, tool: str, client_id: str, count: int) -> None:
    with daemon.client(tool, client_id) as client:
        for _ in range(count):
            assert client.acquire(resource).granted


def http_get(url: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def fleet_keys(server: RedisServer) -> list[str]:
    return sorted(k.decode() for k in server.client().keys("patience:fleet:*"))


def test_three_daemons_list_each_other_and_leave_the_fleet_when_stopped_or_killed() -> None:
    with short_dir() as directory, redis_server(directory) as server:
        text = config(server, '"fleet-api" = { limit = 100, window = "10s" }')
        with daemons(text, 3, http=2) as (first, second, third):
            take(first, "fleet-api", "repeater", "r1", 2)
            take(first, "fleet-api", "patience", "p1", 1)
            take(second, "fleet-api", "repeater", "r2", 1)
            everyone = {pid(first), pid(second), pid(third)}
            started = time.time()

            # The `fleet` query: every daemon, this one first, with clients and shares (once
            # every daemon renewed its record after the grants).
            deadline = time.monotonic() + 10.0
            while True:
                reply = fleet_after(first, started)
                granted = [r["granted"] for d in reply["daemons"] for r in d["resources"]]
                if pids(reply) == everyone and sorted(granted) == [1, 3]:
                    break
                assert time.monotonic() < deadline, reply
                started = time.time()
            assert reply["total"] == 3
            assert reply["truncated"] is False and reply["fresh"] is True
            mine, *others = reply["daemons"]
            assert mine["self"] and mine["pid"] == pid(first)
            assert not any(d["self"] for d in others)
            assert mine["clients"] == {"repeater": 1, "patience": 1}
            (api,) = mine["resources"]
            assert (api["id"], api["granted"], api["limit"], api["window"]) == (
                "fleet-api", 3, 100, 10.0,
            )  # fmt: skip
            assert api["share"] == 3 / 4
            by_pid = {d["pid"]: d for d in reply["daemons"]}
            assert by_pid[pid(second)]["resources"][0]["share"] == 1 / 4
            assert by_pid[pid(third)]["resources"] == []  # it granted nothing

            # status --fleet: a table with a line per daemon, this one marked.
            shown = run_daemon(second.dir, "status", "--fleet", "--socket", second.socket)
            assert shown.returncode == 0, shown.stderr
            head, header, *rows = shown.stdout.splitlines()
            assert head.startswith("fleet: 3 live daemons (read ")
            assert "CLIENTS" in header and "RESOURCES" in header
            assert len(rows) == 3 and rows[0].startswith("*") and str(pid(second)) in rows[0]
            assert "fleet-api: 1 of 100 per 10s (25% of the fleet's)" in rows[0]
            line = next(r for r in rows if f" {pid(first)} " in r)
            assert "patience 1, repeater 1" in line and "(75% of the fleet's)" in line

            # GET /api/v1/fleet on the third: the same daemons.
            url = wait_for_url(third)
            status, body = http_get(url + "api/v1/fleet")
            while status == 200 and not body["fresh"]:
                time.sleep(0.05)
                status, body = http_get(url + "api/v1/fleet")
            assert status == 200 and pids(body) == everyone
            assert body["daemons"][0]["pid"] == pid(third) and body["daemons"][0]["self"]
            assert http_get(url + "api/v1/fleet?x=1")[0] == 400

            assert fleet_keys(server) and all(k.startswith(PREFIX) for k in fleet_keys(server))

            # Stopped: its record goes with it (the next read no longer has it).
            third.stop()
            stopped = time.time()
            assert pids(fleet_after(first, stopped)) == {pid(first), pid(second)}
            assert time.time() - stopped < 1.0  # long before a record would expire (1.6 s)

            # Killed: its record stays until it expires, 3 heartbeats and a second after the
            # last renewal.
            second.stop(signal.SIGKILL)
            killed = time.time()
            while pid(second) in pids(fleet_after(first, time.time())):
                assert time.time() - killed < 10.0, "the killed daemon's record did not expire"
            gone = time.time() - killed
            assert 0.5 < gone < 4.0, gone
            assert pids(fleet_after(first, time.time())) == {pid(first)}
            first.stop()
        # Nothing is left in Redis once no daemon beats: removed or expired.
        deadline = time.monotonic() + 5.0
        while fleet_keys(server):
            assert time.monotonic() < deadline, fleet_keys(server)
            time.sleep(0.1)


def test_a_fleet_larger_than_a_read_is_cut_and_says_so() -> None:
    """300 more records written into Redis beside a real daemon's (and one that is not a
    record), all renewed after it: the daemon reads the 256 most recently renewed, skips what
    it cannot read, shows itself first all the same, and says how many are live."""
    from patience.daemon.fleet import MEMBERS, RECORDS
    from patience.daemon.fleet_records import MAX_DAEMONS, encode_record, make_record

    with (
        short_dir() as directory,
        redis_server(directory) as server,
        daemons(config(server, '"x" = { limit = 1, window = "1s" }'), 1) as (daemon,),
    ):
        fleet_after(daemon, time.time())  # registered
        redis = server.client()
        seconds, micros = redis.time()
        expires = seconds * 1000 + micros // 1000 + 60_000  # renewed after the daemon
        for i in range(300):
            record = make_record(f"fake-{i}", f"host-{i}", i, "0.0", 0.0, {}, [])
            redis.hset(RECORDS, f"fake-{i}", encode_record(record))
            redis.zadd(MEMBERS, {f"fake-{i}": expires - i})
        redis.hset(RECORDS, "junk", b"not a record")
        redis.zadd(MEMBERS, {"junk": expires})
        reply = fleet_after(daemon, time.time())
        assert reply["total"] == 302 and reply["truncated"] is True
        assert reply["skipped"] == 1  # of the MAX_DAEMONS read: the junk and 255 others
        assert len(reply["daemons"]) == MAX_DAEMONS  # those 255, and itself always
        assert reply["daemons"][0]["self"] and reply["daemons"][0]["pid"] == pid(daemon)
        assert {d["pid"] for d in reply["daemons"][1:]} == set(range(255))  # the newest
        shown = run_daemon(daemon.dir, "status", "--fleet", "--socket", daemon.socket)
        assert "fleet: 302 live daemons" in shown.stdout
        assert "showing the 256 most recently renewed" in shown.stdout


def test_with_the_memory_backend_there_is_no_fleet() -> None:
    with daemons("", 1, http=0) as (daemon,):
        shown = run_daemon(daemon.dir, "status", "--fleet", "--socket", daemon.socket)
        assert shown.returncode == 1 and shown.stdout == ""
        assert shown.stderr == f"patience-daemon: {NO_FLEET}\n"
        assert "backend is memory" in NO_FLEET and 'backend = "redis"' in NO_FLEET
        assert ask(daemon, {"type": "fleet"}) == {"type": "error", "error": NO_FLEET}
        status, body = http_get(wait_for_url(daemon) + "api/v1/fleet")
        assert (status, body) == (404, {"error": NO_FLEET})
        bad = ask(daemon, {"type": "fleet", "daemons": 5})
        assert bad["type"] == "error" and "daemons" in bad["error"]


# ---- the fallback share ------------------------------------------------------------------

LIMIT, WINDOW = 12, 2.0
RUN_FOR = 11.0  # seconds each rpr runs
KILL_AT, BACK_AT = 3.5, 7.0  # seconds after the rprs start: Redis killed, started again


def rpr(daemon: Daemon, record: Path) -> subprocess.Popen[str]:
    """A real rpr taking a token from `daemon` before each start; each start appends its
    time to `record`."""
    return subprocess.Popen(
        [
            str(BIN / "rpr"), "duration", "--for", f"{RUN_FOR}s", "--daemon",
            "--daemon-socket", daemon.socket, "--resource-id", "shared-api", "--quiet",
            "--", "sh", "-c", f"date +%s.%N >> {record}",
        ],
        env=isolated_env(daemon.dir),
        cwd=daemon.dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def limit_in_force(daemon: Daemon) -> tuple[int, str]:
    (resource,) = ask(daemon, {"type": "resource_state", "resource_id": "shared-api"})["resources"]
    return resource["rate_limit"]["limit"], resource["rate_limit"]["source"]


def wait_until(check: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def reachable(daemon: Daemon) -> bool:
    return "redis_unreachable_since" not in ask(daemon, {"type": "status"})


@pytest.mark.slow
def test_during_an_outage_the_fleet_keeps_near_the_limit_and_after_it_the_limit_is_global() -> None:
    """12 per 2 s, three daemons, an rpr on each asking as fast as it may. With Redis killed
    each daemon enforces 12 / 3 = 4 of its own: every 2 s window holds about 12 starts, not
    36; with Redis back each has the whole 12 again, decided in Redis."""
    with short_dir() as directory, redis_server(directory) as server:
        text = config(server, f'"shared-api" = {{ limit = {LIMIT}, window = "{WINDOW:g}s" }}')
        with daemons(text, 3) as fleet:
            records = [d.dir / "starts" for d in fleet]
            began = time.time()
            clients = [rpr(d, r) for d, r in zip(fleet, records, strict=True)]
            try:
                time.sleep(max(0.0, began + KILL_AT - time.time()))
                server.stop()
                killed = time.time()
                for daemon in fleet:
                    wait_until(lambda d=daemon: not reachable(d), "the outage is noticed")
                    assert limit_in_force(daemon) == (4, "config:shared-api, shared by 3 daemons")
                time.sleep(max(0.0, began + BACK_AT - time.time()))
                restarted = time.time()
                server.start()
                for daemon in fleet:
                    wait_until(lambda d=daemon: reachable(d), "Redis is back")
                    assert limit_in_force(daemon) == (LIMIT, "config:shared-api")
                back = time.time()
                for proc in clients:
                    _, err = proc.communicate(timeout=60)
                    assert proc.returncode == 0, err
            finally:
                for proc in clients:
                    if proc.poll() is None:
                        proc.kill()
                        proc.wait()
            starts = [[float(t) for t in r.read_text().split()] for r in records]
    every = sorted(t for times in starts for t in times)
    # Clients note a start after the grant's reply and the fork: allow each daemon one start
    # of noise at a window's edges (the daemons' in-flight noise), and measure over 1.9 s.
    noise = len(starts)
    outage = [t for t in every if killed + 0.3 <= t < restarted]
    during = most_in_window(outage, WINDOW - 0.1)
    print(f"most starts in a {WINDOW - 0.1:g} s window: during the outage {during},", end=" ")
    print(f"after it {most_in_window([t for t in every if t >= back + WINDOW], WINDOW - 0.1)}")
    assert during <= LIMIT + noise, (during, outage)  # not 3 x 12
    assert len(outage) >= LIMIT  # the limit is still used, by all three
    assert all(any(killed + 0.3 <= t < restarted for t in times) for times in starts)
    after = [t for t in every if t >= back + WINDOW]
    assert most_in_window(after, WINDOW - 0.1) <= LIMIT + noise, after
    assert len(after) >= LIMIT  # one global limit, used
