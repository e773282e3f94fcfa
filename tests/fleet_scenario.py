"""A fleet on one machine, for the scale test (tests/test_fleet_scale.py) and the capacity
benchmark (benchmarks/bench_fleet.py), which must run the same scenario to be comparable.

One real redis-server; N real `patience-daemon` processes with `backend = "redis"`, each in a
directory of its own (socket, state, storage, configuration), as on N hosts; C client
processes per daemon. Each client is a small Python loop on patience.daemon.client (not
`rpr`: an `rpr` grant also forks and runs a command, which on 2 shared cores would measure
process start-up rather than coordination), asking for one token of one resource at a time
and noting the time each grant arrives. Redis's own counters (INFO commandstats and cpu) are
read just before the clients start and just after they stop.

The measures (fairness, the grants in a span; the fullest window is
integration_support.most_in_window) are pure functions of the recorded times, tested on
their own without a fleet."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from daemon_support import PYTHON, Daemon, short_dir
from redis_support import RedisServer

__all__ = [
    "RESOURCE",
    "Fleet",
    "FleetResult",
    "count_between",
    "jain_index",
    "run_fleet",
]

RESOURCE = "fleet-api"
# What a daemon logs when it falls back to its own limits (docs/multi-host.md).
LOCAL_LIMITS = "cannot use Redis at"
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")

# argv: socket, client id, resource. Says "ready" once connected, reads "START STOP" (Unix
# times) from stdin, asks until STOP, prints its grants' arrival times as a JSON list.
CLIENT = """
import json, sys, time
from patience.daemon.client import DaemonClient
socket_path, client_id, resource = sys.argv[1:4]
client = DaemonClient(socket_path, "repeater", client_id, timeout=30.0)
client.connect()
print("ready", flush=True)
start, stop = map(float, sys.stdin.readline().split())
time.sleep(max(0.0, start - time.time()))
times = []
while (left := stop - time.time()) > 0:
    if client.acquire(resource, max_wait=left).granted:
        times.append(time.time())
print(json.dumps(times), flush=True)
"""


@dataclass(frozen=True)
class Fleet:
    """`daemons` x `clients` (per daemon) sharing `limit` tokens per `window` seconds of
    RESOURCE for `seconds`; without clients, the daemons at rest for `seconds`."""

    daemons: int
    clients: int
    limit: int
    window: float
    seconds: float


@dataclass(frozen=True)
class FleetResult:
    """What a run recorded: each daemon's clients' grant times (sorted), the span the clients
    asked in (Unix times), and what Redis did between the two snapshots `elapsed` seconds
    apart: the calls per command (inside scripts too, as Redis counts them) and its CPU
    seconds (user + system)."""

    fleet: Fleet
    grants: tuple[tuple[float, ...], ...]
    start: float
    stop: float
    elapsed: float
    calls: dict[str, int]
    redis_cpu: float

    @property
    def every(self) -> list[float]:
        return sorted(t for times in self.grants for t in times)

    @property
    def total(self) -> int:
        return sum(len(times) for times in self.grants)

    def summary(self) -> dict[str, Any]:
        """The figures of the capacity table, and the raw counts behind them (JSON-ready)."""
        total = max(1, self.total)
        scripts = sum(self.calls.get(name, 0) for name in SCRIPT_COMMANDS)
        return {
            "daemons": self.fleet.daemons,
            "clients": self.fleet.daemons * self.fleet.clients,
            "limit": self.fleet.limit,
            "window_s": self.fleet.window,
            "seconds": self.fleet.seconds,
            "grants": self.total,
            "grants_per_s": self.total / (self.stop - self.start),
            "grants_per_daemon": [len(times) for times in self.grants],
            "fairness": jain_index([len(times) for times in self.grants]),
            "redis_cpu_percent": 100.0 * self.redis_cpu / self.elapsed,
            "redis_cpu_us_per_grant": 1e6 * self.redis_cpu / total,
            "redis_commands_per_grant": sum(self.calls.values()) / total,
            "redis_scripts": scripts,
            "redis_scripts_per_grant": scripts / total,
            "redis_calls": dict(sorted(self.calls.items())),
        }


def count_between(times: Sequence[float], begin: float, end: float) -> int:
    return sum(1 for t in times if begin <= t < end)


def jain_index(counts: Sequence[int]) -> float:
    """Jain's fairness index, (sum x)^2 / (n * sum x^2): 1 when all are equal, 1/n when one
    has everything; 1 for no counts or all zero (nothing was unfair)."""
    squares = sum(x * x for x in counts)
    if not squares:
        return 1.0
    return sum(counts) ** 2 / (len(counts) * squares)


def run_fleet(fleet: Fleet) -> FleetResult:
    """Start the fleet, let its clients ask for `fleet.seconds`, stop it; what it recorded."""
    with short_dir() as directory, _redis(directory) as server, _daemons(fleet, server) as socks:
        clients = [
            _client(sock, f"fleet-{d}-{c}")
            for d, sock in enumerate(socks)
            for c in range(fleet.clients)
        ]
        try:
            for proc in clients:  # every client connected (and imported) before any starts
                assert proc.stdout is not None
                line = proc.stdout.readline()
                assert line == "ready\n", f"a fleet client failed: {line!r} {_stderr(proc)}"
            before, at = _redis_counters(server), time.monotonic()
            start = time.time() + 0.2
            stop = start + fleet.seconds
            for proc in clients:
                assert proc.stdin is not None
                proc.stdin.write(f"{start!r} {stop!r}\n")
                proc.stdin.flush()
            outputs = [_finish(proc, fleet.seconds + 60.0) for proc in clients]
            time.sleep(max(0.0, stop - time.time()))  # without clients: the fleet at rest
            after, elapsed = _redis_counters(server), time.monotonic() - at
        finally:
            for proc in clients:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
    per_client = [json.loads(out) for out in outputs]
    grants = tuple(
        tuple(
            sorted(
                t
                for times in per_client[d * fleet.clients : (d + 1) * fleet.clients]
                for t in times
            )
        )
        for d in range(fleet.daemons)
    )
    calls = {
        name: after[0].get(name, 0) - before[0].get(name, 0)
        for name in after[0]
        if after[0].get(name, 0) != before[0].get(name, 0)
    }
    return FleetResult(fleet, grants, start, stop, elapsed, calls, after[1] - before[1])


@contextlib.contextmanager
def _redis(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory).start()
    try:
        server.client().config_set("maxclients", 10000)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def _daemons(fleet: Fleet, server: RedisServer) -> Iterator[list[str]]:
    """The fleet's daemons, started one after another; their sockets."""
    window = f"{fleet.window!r}s"
    text = (
        f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\n'
        f"[rate_limiting.resources]\n"
        f'"{RESOURCE}" = {{ limit = {fleet.limit}, window = "{window}" }}\n'
    )
    with contextlib.ExitStack() as stack:
        started = []
        for _ in range(fleet.daemons):
            daemon = Daemon(stack.enter_context(short_dir()), text)
            stack.callback(daemon.ensure_stopped)
            started.append(daemon.start())
        yield [daemon.socket for daemon in started]
        for daemon in started:  # each decided through Redis, to the end
            assert daemon.proc is not None and daemon.proc.poll() is None, daemon.log_text()
            assert LOCAL_LIMITS not in daemon.log_text(), daemon.log_text()


def _client(socket_path: str, client_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PYTHON, "-c", CLIENT, socket_path, client_id, RESOURCE],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen[str], timeout: float) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"a fleet client failed ({proc.returncode}): {err}"
    return out


def _stderr(proc: subprocess.Popen[str]) -> str:
    proc.kill()
    return proc.communicate()[1]


def _redis_counters(server: RedisServer) -> tuple[dict[str, int], float]:
    """Calls per command so far, and Redis's CPU seconds so far."""
    with server.client() as client:
        stats = client.info("commandstats")
        cpu = client.info("cpu")
    calls = {name.removeprefix("cmdstat_"): int(entry["calls"]) for name, entry in stats.items()}
    return calls, float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])
