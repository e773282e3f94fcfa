"""Real daemons on Redis Sentinel (a master, a replica, three sentinels on loopback ports),
with real rpr and patience running under one limit: the master is killed (-9) mid-run, the
sentinels promote the replica, and the daemons see one outage and go global again on the new
master without a restart. The limit holds in every window entirely before the kill and
entirely after the daemons are back; no run goes missing from the daemons' metrics."""

from __future__ import annotations

import contextlib
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_support import Daemon, isolated_env, running_many, short_dir
from integration_support import most_in_window
from redis_ha_support import SentinelSet, Tls, sentinel_set
from tools import PATIENCE, RPR

RESOURCE = "ha-api"
LIMIT, WINDOW = 10, 2.0
RUN_FOR = 14.0  # seconds each client runs
KILL_AFTER = 5.0  # seconds after the clients start
# Pings every 0.2s (the default is 1s) and metrics flushed at once: a test need not wait.
INTERVALS = {"redis_watch": 0.2, "flush": 0.2}
LOST = "cannot use Redis at"
BACK = "is back: rate limits are global again"
TRIED = re.compile("rate limits are kept in Redis|cannot use Redis at")
# The clients stamp each start after the grant's reply, a fork and two execs (sh, date): late
# by up to 0.2s on a loaded machine, unevenly, so two starts a window apart may be stamped
# closer. The windows counted are shorter by SLACK; the starts after the return are counted
# from LAG after it (a start granted locally just before may be stamped just after).
SLACK = 0.25
LAG = 0.3


def config(url: str) -> str:
    return (
        f'[daemon]\nbackend = "redis"\nredis_url = "{url}"\n'
        f'[rate_limiting.resources]\n"{RESOURCE}" = {{ limit = {LIMIT}, window = "{WINDOW}s" }}\n'
    )


@contextlib.contextmanager
def daemons(text: str, count: int, env: dict[str, str] | None = None) -> Iterator[list[Daemon]]:
    """Daemons that have tried Redis once: a daemon serves while its first call to Redis is
    under way, and decides on its own until that call answers."""
    with running_many(text, count, INTERVALS, env) as started:
        for daemon in started:
            until(lambda d=daemon: TRIED.search(d.log_text()) is not None)
        yield started


def clients(daemon: Daemon, stamps: Path) -> list[subprocess.Popen[str]]:
    """Two rpr and one patience (failing each attempt, so it goes on) through `daemon`, each
    start appending its time to its own file under `stamps`."""
    flags = ["--daemon", "--daemon-socket", daemon.socket, "--resource-id", RESOURCE]
    stamp = 'date +%s.%N >> "$0"'
    argvs = [
        [RPR, "duration", "--for", f"{RUN_FOR}s", *flags, "--", "sh", "-c", stamp],
        [RPR, "duration", "--for", f"{RUN_FOR}s", *flags, "--", "sh", "-c", stamp],
        [PATIENCE, "fixed", "--delay", "10ms", "--attempts", "1000", "--max-time",
         f"{RUN_FOR}s", "--quiet", *flags, "--", "sh", "-c", f"{stamp}; exit 1"],
    ]  # fmt: skip
    env = isolated_env(daemon.dir)
    procs = []
    for number, argv in enumerate(argvs):
        path = stamps / f"{Path(daemon.dir).name}-{number}"
        procs.append(
            subprocess.Popen(
                [*argv, str(path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                text=True,
            )
        )  # fmt: skip
    return procs


def status(daemon: Daemon) -> dict[str, object]:
    with daemon.client("patience", f"status-{time.monotonic_ns()}") as client:
        return client.status()


def until(predicate, timeout: float = 30.0) -> float:  # type: ignore[no-untyped-def]
    """Poll `predicate`; the wall time at which it first held."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)
    return time.time()


def runs_stored(daemon: Daemon) -> int:
    with daemon.client() as client:
        [summary] = client.query("resource_summary", resource_id=RESOURCE)
    return int(summary["total_executions"])  # type: ignore[call-overload]


def kill_master_and_watch(ha: SentinelSet, pair: list[Daemon]) -> tuple[float, float]:
    """Kill the master; when it was killed, and when both daemons were global again."""
    old = ha.master_port()
    killed = time.time()
    ha.master.kill()
    for daemon in pair:
        until(lambda d=daemon: "redis_unreachable_since" in status(d))
    back = max(until(lambda d=daemon: "redis_unreachable_since" not in status(d)) for d in pair)
    assert ha.master_port() == ha.replica.port != old
    return killed, back


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_a_failover_is_one_outage_and_the_limit_holds_either_side() -> None:
    with (
        short_dir() as directory,
        sentinel_set(directory) as ha,
        daemons(config(ha.url), 2) as pair,
    ):
        stamps = directory / "stamps"
        stamps.mkdir()
        procs = [proc for daemon in pair for proc in clients(daemon, stamps)]
        try:
            time.sleep(KILL_AFTER)
            killed, back = kill_master_and_watch(ha, pair)
        finally:
            for proc in procs:
                _, err = proc.communicate(timeout=RUN_FOR + 60)
                # patience: 1 when every attempt failed, 124 when --max-time cut the last one
                assert proc.returncode in (0, 1, 124), err
        ran = {
            daemon.socket: sum(
                len(path.read_text().split()) for path in stamps.glob(f"{Path(daemon.dir).name}-*")
            )
            for daemon in pair
        }
        for daemon in pair:
            until(lambda d=daemon: runs_stored(d) == ran[d.socket], timeout=10.0)
            log = daemon.log_text()
            assert log.count(LOST) == log.count(BACK) == 1, log
        shown = status(pair[0])
        starts = sorted(float(t) for path in stamps.iterdir() for t in path.read_text().split())
    before = [t for t in starts if t < killed]
    after = [t for t in starts if t >= back + LAG]
    during = [t for t in starts if killed <= t < back + LAG]
    print(
        f"failover: {back - killed:.2f}s of local limits, at most"
        f" {most_in_window(during, WINDOW)} runs in a window then; {len(starts)} runs"
    )
    assert back - killed < 20.0
    assert most_in_window(before, WINDOW - SLACK) <= LIMIT, before
    assert most_in_window(after, WINDOW - SLACK) <= LIMIT, after
    # Both sides saw real demand: the windows were full, not trivially under the limit.
    assert len(before) >= 2 * LIMIT and len(after) >= 2 * LIMIT, starts
    assert shown["backend"] == "redis" and str(shown["redis_url"]) == ha.url


def take(daemon: Daemon) -> bool:
    with daemon.client("patience", f"probe-{time.monotonic_ns()}") as client:
        return client.acquire(RESOURCE).granted


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_rediss_sentinel_speaks_tls_to_the_sentinels_and_the_master() -> None:
    """Every server and sentinel speaks only TLS: daemons that trust the authority (here
    through SSL_CERT_FILE) share one limit; one that does not falls back, saying why."""
    with short_dir() as directory:
        tls = Tls(directory)
        with sentinel_set(directory, tls) as ha:
            assert ha.url.startswith("rediss+sentinel://")
            text = config(ha.url).replace(f"limit = {LIMIT}", "limit = 1")
            with daemons(text, 2, {"SSL_CERT_FILE": str(tls.ca)}) as (first, second):
                assert take(first)
                assert not take(second)  # global: the first daemon's grant counts
                for daemon in (first, second):
                    assert "redis_unreachable_since" not in status(daemon)
                    assert status(daemon)["redis_url"] == ha.url
            with daemons(text, 1) as (stranger,):
                until(lambda: "redis_unreachable_since" in status(stranger))
                log = stranger.log_text()
    [line] = [line for line in log.splitlines() if LOST in line]
    # One readable line: each sentinel's answer, not every setting of every client.
    assert "no sentinel names a master: 127.0.0.1:" in line and len(line) < 1000, line
    assert line.count("certificate verify failed") == 3, line
