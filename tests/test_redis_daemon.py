"""Real daemons sharing one real redis-server (`[daemon] backend = "redis"`): one global
limit across daemons, turns shared between them, Redis stopped mid-run (local limits, one log
line, `status` says so) and back, start without Redis, configuration errors."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from daemon_support import Daemon, finish, run_daemon, running_many, short_dir, worker
from integration_support import most_in_window
from patience.daemon.fleet import PREFIX as FLEET_PREFIX
from patience.ratelimit.redis_store import PREFIX
from redis_support import TAKE, RedisServer, redis_server

LOST = "cannot use Redis at"
# In the outage tests the daemons ping Redis every 0.2s (not every second): an outage or a
# return is seen sooner.
WATCH_OFTEN = {"redis_watch": 0.2}
BACK = "is back: rate limits are global again"


def config(server: RedisServer, limits: str, clock: str = "daemon") -> str:
    return (
        f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\nredis_clock = "{clock}"\n'
        f"[rate_limiting.resources]\n{limits}\n"
    )


def take(daemon: Daemon, resource: str, client_id: str = "probe") -> bool:
    with daemon.client("patience", f"{client_id}-{time.monotonic_ns()}") as client:
        return client.acquire(resource).granted


def status(daemon: Daemon) -> dict[str, object]:
    with daemon.client("patience", f"status-{time.monotonic_ns()}") as client:
        return client.status()


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_two_daemons_enforce_one_global_limit() -> None:
    """10 per 2s across two daemons, each with a client asking for 20: 40 tokens take three
    windows after the first burst, no 2s window holds more than 10, and both daemons' clients
    are served in every window."""
    with short_dir() as directory, redis_server(directory) as server:
        text = config(server, '"global-api" = { limit = 10, window = "2s" }')
        with running_many(text, 2) as (first, second):
            start = time.time() + 0.5
            procs = [
                worker(TAKE, daemon.socket, f"rpr-{i}", "global-api", "20", str(start))
                for i, daemon in enumerate((first, second))
            ]
            outputs = finish(procs)
            keys = [key.decode() for key in server.client().keys("*")]
            states = [status(daemon) for daemon in (first, second)]
    grants = [[float(line) for line in out.split()] for out in outputs]
    every = sorted(t for times in grants for t in times)
    assert [len(times) for times in grants] == [20, 20]
    # Clients timestamp grants after the reply travels back: allow a little jitter.
    assert most_in_window(every, 1.9) <= 10
    assert every[-1] - every[0] >= 5.8
    # While both ask, each window's ten are shared: neither waits for the other to finish.
    for times in grants:
        per_window = [0] * 4
        for at in times:
            per_window[min(3, round((at - every[0]) / 2.0))] += 1
        assert min(per_window[:3]) >= 1, (per_window, grants)
    # The limit's state, and the fleet registry's (patience.daemon.fleet): nothing else.
    limits = [key for key in keys if not key.startswith(FLEET_PREFIX)]
    assert limits and all(
        key.startswith(PREFIX + "{global-api}:diophantine:10:2.0:") for key in limits
    )
    for state in states:
        assert state["backend"] == "redis" and state["redis_url"] == server.url
        assert "redis_unreachable_since" not in state


def test_redis_stopped_mid_run_then_back() -> None:
    """With Redis gone each daemon enforces its share of the limit (divided among the daemons
    the fleet registry counted on it, from its own grants), logs it once and says so in
    status; when Redis is back the limit is global again."""
    with short_dir() as directory, redis_server(directory) as server:
        text = config(
            server,
            '"outage" = { limit = 3, window = "60s" }\n"after" = { limit = 3, window = "60s" }',
            clock="redis",
        )
        beats = {**WATCH_OFTEN, "fleet_heartbeat": 0.2}
        with running_many(text, 2, intervals=beats) as (first, second):
            assert [take(first, "outage") for _ in range(3)] == [True] * 3
            assert not take(second, "outage")  # global: the first daemon holds all three

            def counted() -> bool:  # the second's fleet registry has seen the first's grants
                with second.client("patience", f"fleet-{time.monotonic_ns()}") as client:
                    seen: Any = client.request({"type": "fleet"})["daemons"]
                return any(r["granted"] == 3 for d in seen for r in d["resources"])

            wait_for(counted)
            server.stop()
            for daemon in (first, second):
                wait_for(lambda d=daemon: "redis_unreachable_since" in status(d))
            assert not take(first, "outage")  # its own three still count here
            # Its share: 3 // 2 daemons active on it (patience.daemon.fleet_share).
            assert [take(second, "outage") for _ in range(2)] == [True, False]
            time.sleep(0.6)  # more pings fail: still one line
            for daemon in (first, second):
                assert daemon.log_text().count(LOST) == 1, daemon.log_text()
            shown = run_daemon(first.dir, "status", "--socket", first.socket)
            assert "rate limits: local to this daemon: Redis at unix://" in shown.stdout
            server.start()
            for daemon in (first, second):
                wait_for(lambda d=daemon: "redis_unreachable_since" not in status(d))
                assert daemon.log_text().count(BACK) == 1
            shown = run_daemon(first.dir, "status", "--socket", first.socket)
            assert f"rate limits: in Redis at {server.url}" in shown.stdout
            assert [take(first, "after"), take(second, "after"), take(first, "after")] == [True] * 3
            assert not take(second, "after")
            assert not take(first, "after")
            assert first.log_text().count(LOST) == 1, first.log_text()


def test_connections_from_before_a_restart_are_not_taken_for_an_outage() -> None:
    """Requests for many resources at once open several connections to Redis; after Redis
    restarts those are dead: the daemon may see that as one outage, not as one per connection."""
    with short_dir() as directory, redis_server(directory) as server:
        limits = "\n".join(f'"r{i}" = {{ limit = 100, window = "60s" }}' for i in range(8))
        with running_many(config(server, limits), 1, intervals=WATCH_OFTEN) as (daemon,):

            def burst() -> None:
                procs = [
                    worker(TAKE, daemon.socket, f"c{i}", f"r{i}", "5", str(time.time()))
                    for i in range(8)
                ]
                finish(procs)

            burst()
            server.stop()
            server.start()
            burst()  # on connections that died with the old server
            wait_for(lambda: "redis_unreachable_since" not in status(daemon))
            burst()
            burst()
            log = daemon.log_text()
            assert log.count(LOST) == log.count(BACK) <= 1, log


def test_clients_keep_being_served_while_redis_goes_and_comes_back() -> None:
    """Clients on both daemons take tokens in a loop (waiting in the daemons' queues) while
    Redis is killed and restarted under them: every request is answered with a grant."""
    with short_dir() as directory, redis_server(directory) as server:
        text = config(server, '"flow" = { limit = 20, window = "1s" }')
        with running_many(text, 2) as (first, second):
            start = time.time() + 0.3
            procs = [
                worker(TAKE, daemon.socket, f"loop-{i}", "flow", "60", str(start))
                for i, daemon in enumerate((first, second))
            ]
            time.sleep(1.0)
            server.stop()
            time.sleep(1.0)
            server.start()
            outputs = finish(procs)
            for daemon in (first, second):
                wait_for(lambda d=daemon: "redis_unreachable_since" not in status(d))
                assert daemon.log_text().count(LOST) == daemon.log_text().count(BACK) == 1
    assert [len(out.split()) for out in outputs] == [60, 60]


def test_a_daemon_started_without_redis_uses_it_once_it_comes() -> None:
    with short_dir() as directory:
        server = RedisServer(directory)
        limits = '"early" = { limit = 1, window = "60s" }\n"late" = { limit = 1, window = "60s" }'
        with running_many(config(server, limits), 2, intervals=WATCH_OFTEN) as (first, second):
            assert isinstance(status(first)["redis_unreachable_since"], float)
            assert take(first, "early") and take(second, "early")  # each on its own
            server.start()
            try:
                for daemon in (first, second):
                    wait_for(lambda d=daemon: "redis_unreachable_since" not in status(d))
                assert take(second, "late")
                assert not take(first, "late")
            finally:
                server.stop()
            assert first.log_text().count(LOST) == 1


def test_configuration_errors_stop_the_daemon_with_status_2(tmp_path: Path) -> None:
    cases = {
        '[daemon]\nbackend = "redis"\n': 'backend "redis" needs daemon.redis_url',
        '[daemon]\nbackend = "etcd"\n': "daemon.backend: expected one of memory, redis",
        '[daemon]\nbackend = "redis"\nredis_url = "http://x"\n': (
            "daemon.redis_url: expected a Redis URL"
        ),
        '[daemon]\nbackend = "redis"\nredis_url = "redis://host:xx/0"\n': (
            "daemon.redis_url: Port could not be cast to integer value as 'xx'"
        ),
        '[daemon]\nbackend = "redis"\nredis_url = "redis://x"\nredis_clock = "ntp"\n': (
            "daemon.redis_clock: expected one of daemon, redis"
        ),
    }
    with short_dir() as directory:
        for number, (text, message) in enumerate(cases.items()):
            path = directory / f"c{number}.toml"
            path.write_text(text)
            result = run_daemon(
                directory, "--socket", str(directory / f"d{number}.sock"), "--config", str(path)
            )
            assert result.returncode == 2, result.stderr
            assert message in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_without_the_redis_package_the_daemon_says_how_to_install_it() -> None:
    with short_dir() as directory:
        hidden = directory / "hide"
        (hidden / "redis").mkdir(parents=True)
        (hidden / "redis" / "__init__.py").write_text("raise ImportError('no redis here')\n")
        path = directory / "c.toml"
        path.write_text('[daemon]\nbackend = "redis"\nredis_url = "redis://localhost"\n')
        result = run_daemon(
            directory,
            "--socket",
            str(directory / "d.sock"),
            "--config",
            str(path),
            env={"PYTHONPATH": str(hidden)},
        )
    assert result.returncode == 2, result.stderr
    assert "needs the redis package (pip install 'patience-cli[redis]')" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
