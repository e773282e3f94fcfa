"""patience-daemon token acquisitions against redis-server doing the same check-and-update.

Both sides: N client processes (1, 8, 64) on one machine, each taking a token for one shared
resource in a loop for a fixed time, one request at a time, over a Unix socket. Ours: the
project's synchronous client and the daemon's sliding-window log ("diophantine"). Reference:
redis-py running a Lua sliding-window log (ZREMRANGEBYSCORE, ZCARD, ZADD, PEXPIRE) against a
redis-server with persistence off. The limit is set high enough that every request is granted,
so both measure the cost of one atomic check-and-update round trip. Rounds alternate A/B;
throughput is the median over rounds, latency percentiles are over all requests.

At 8 and 64 clients a third side runs too: a daemon with `backend = "redis"` on the same
redis-server (the multi-host set-up), where each acquisition is a client-daemon round trip plus
the daemon's share of a batched call to Redis. Its target (issue 13): at least the reference's
throughput at both counts, and a p99 of at most 2 ms at 8 clients.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from common import PYTHON, Row, tool
from patience.hostload import HostLoad

CLIENTS = (1, 8, 64)
BACKEND_CLIENTS = (8, 64)  # the daemon with the Redis backend is measured at these counts
ROUNDS = 3
SECONDS = 2.0
LIMIT = 10**9

LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1e6
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
local used = redis.call('ZCARD', KEYS[1])
if used < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return {1, tonumber(ARGV[2]) - used - 1}
end
return {0, 0}
"""

WORKER = """
import json, sys, time
kind, path, start, seconds, me = sys.argv[1:6]
start, seconds = float(start), float(seconds)
if kind.startswith("ours"):
    from patience.daemon.client import DaemonClient
    client = DaemonClient(path, "repeater", me, timeout=10.0)
    client.connect()
    def take():
        assert client.acquire("bench").granted
else:
    import redis
    r = redis.Redis(unix_socket_path=path)
    script = r.register_script(LUA)
    counter = iter(range(10**12))
    def take():
        assert script(keys=["bench"], args=[1.0, LIMIT, f"{me}-{next(counter)}"])[0] == 1
take()  # warm up: connected, script loaded
time.sleep(max(0.0, start - time.time()))
stop = time.perf_counter() + seconds
samples = []
now = time.perf_counter()
while now < stop:
    take()
    after = time.perf_counter()
    samples.append(round((after - now) * 1e6))
    now = after
print(json.dumps(samples))
"""


def run() -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="bench-daemon-", dir="/tmp"))
    daemon = redis = backed = None
    try:
        daemon = _start_daemon(directory, "d")
        redis = _start_redis(directory)
        backed = _start_daemon(
            directory, "b", f'backend = "redis"\nredis_url = "unix://{directory / "r.sock"}"\n'
        )
        results: dict[tuple[str, int], list[Result]] = {}
        for clients in CLIENTS:
            sides = [("ours", "d.sock", [daemon.pid]), ("redis", "r.sock", [redis.pid])]
            if clients in BACKEND_CLIENTS:
                sides.append(("ours+redis", "b.sock", [backed.pid, redis.pid]))
            for _ in range(ROUNDS):
                for kind, name, servers in sides:
                    results.setdefault((kind, clients), []).append(
                        _round(kind, str(directory / name), clients, servers)
                    )
        return _rows(results)
    finally:
        for proc in (daemon, redis, backed):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def _start_daemon(directory: Path, name: str, backend: str = "") -> subprocess.Popen[bytes]:
    config = directory / f"{name}.toml"
    config.write_text(
        f'[daemon]\nstorage_path = "{directory / name}.db"\nmax_connections = 1024\n{backend}'
        f'[rate_limiting.resources]\n"bench" = {{ limit = {LIMIT}, window = "1s" }}\n'
    )
    # Only this configuration: not the host's system, user or project files.
    isolated = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PATIENCE_", "RPR_", "XDG_"))
    }
    isolated.update(PATIENCE_SYSTEM_CONFIG_DIR=str(directory), XDG_CONFIG_HOME=str(directory))
    socket_path = str(directory / f"{name}.sock")
    proc = subprocess.Popen(
        [tool("patience-daemon"), "--socket", socket_path, "--config", str(config)],
        stderr=subprocess.DEVNULL,
        env=isolated,
        cwd=directory,
    )
    _wait_for(directory / f"{name}.sock")
    return proc


def _start_redis(directory: Path) -> subprocess.Popen[bytes]:
    server = shutil.which("redis-server")
    if server is None:
        raise SystemExit(
            "bench_daemon: redis-server is not installed (apt-get install redis-server)"
        )
    proc = subprocess.Popen(
        [
            server,
            "--port",
            "0",
            "--unixsocket",
            str(directory / "r.sock"),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--maxclients",
            "1024",
        ],
        stdout=subprocess.DEVNULL,
    )
    _wait_for(directory / "r.sock")
    return proc


def _wait_for(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_daemon: {path} never appeared")
        time.sleep(0.02)
    time.sleep(0.1)


def _round(kind: str, path: str, clients: int, servers: Sequence[int] = ()) -> Result:
    """Requests per second over the timed span, every request's latency in µs, and the CPU
    the machine and the `servers` (pids) spent in the middle of that span."""
    start = time.time() + 1.5 + clients * 0.05  # every worker connected and warmed up by then
    code = WORKER.replace("LUA", repr(LUA)).replace("LIMIT", str(LIMIT))
    procs = [
        subprocess.Popen(
            [PYTHON, "-c", code, kind, path, str(start), str(SECONDS), f"{kind}-{os.getpid()}-{i}"],
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        for i in range(clients)
    ]
    # The workers write their samples only at the end: until then, this process is free to
    # read the CPU counters.
    host = HostLoad()
    time.sleep(max(0.0, start + SECONDS * 0.2 - time.time()))
    before = _counters(host, servers)
    time.sleep(SECONDS * 0.6)
    after = _counters(host, servers)
    samples: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"bench_daemon: a {kind} worker failed")
        samples.extend(json.loads(out))
    rate = len(samples) / SECONDS
    return rate, samples, Cpu(before, after, rate, host.cores)


class Cpu:
    """CPU over the middle of a round, per grant (in µs, at the round's mean rate): the whole
    machine's (every process, the clients included) and each server's; and how busy the
    machine was. It says whether a side is bound by CPU or by waiting."""

    def __init__(self, before: Counters, after: Counters, rate: float, cores: int) -> None:
        wall = after.wall - before.wall
        grants = rate * wall
        if after.busy_percent is None:
            raise SystemExit("bench_daemon: /proc/stat cannot be read (Linux only)")
        self.busy = after.busy_percent / 100
        self.machine = 1e6 * self.busy * cores * wall / grants
        pairs = zip(before.used, after.used, strict=True)
        self.servers = [1e6 * (b - a) / grants for a, b in pairs]


class Counters(NamedTuple):
    wall: float  # seconds, monotonic
    busy_percent: float | None  # of all cores since the previous reading (None: the first)
    used: list[float]  # CPU seconds each server process has used


def _counters(host: HostLoad, servers: Sequence[int]) -> Counters:
    ticks = os.sysconf("SC_CLK_TCK")
    used = []
    for pid in servers:
        with open(f"/proc/{pid}/stat") as stat:
            after_name = stat.read().rsplit(") ", 1)[1].split()
        used.append((int(after_name[11]) + int(after_name[12])) / ticks)  # utime, stime
    return Counters(time.monotonic(), host.cpu_used(), used)


Result = tuple[float, list[int], Cpu]  # requests/s, latencies in µs, CPU


def _rows(results: dict[tuple[str, int], list[Result]]) -> list[Row]:
    rows = []
    for clients in CLIENTS:
        ours = results[("ours", clients)]
        redis = results[("redis", clients)]
        ours_rate = statistics.median(rate for rate, _, _ in ours)
        redis_rate = statistics.median(rate for rate, _, _ in redis)
        ratio = ours_rate / redis_rate
        rows.append(
            Row(
                f"daemon acquire/s, {clients} client{'s' if clients > 1 else ''}",
                f"{ours_rate:,.0f}/s",
                f"{redis_rate:,.0f}/s (redis)",
                ratio,
                ">= 0.5x" if clients == 8 else "info",
                ratio >= 0.5 or clients != 8,
            )
        )
        for label, q in (("p50", 0.50), ("p99", 0.99)):
            ours_q = _quantile([s for _, ss, _ in ours for s in ss], q)
            redis_q = _quantile([s for _, ss, _ in redis for s in ss], q)
            target = "<= 2 ms" if label == "p99" and clients == 8 else "info"
            rows.append(
                Row(
                    f"daemon {label} latency, {clients} client{'s' if clients > 1 else ''}",
                    f"{ours_q / 1000:.3f} ms",
                    f"{redis_q / 1000:.3f} ms (redis)",
                    ours_q / redis_q,
                    target,
                    target == "info" or ours_q <= 2000,
                )
            )
        if clients == 8:
            rows.append(_cpu_row("daemon", ours, ("daemon",), redis))
        if clients in BACKEND_CLIENTS:
            rows += _backend_rows(results[("ours+redis", clients)], redis, clients)
    return rows


def _backend_rows(backed: list[Result], redis: list[Result], clients: int) -> list[Row]:
    """The daemon with the Redis backend against Redis alone: at least its throughput, and
    at 8 clients a p99 of at most 2 ms."""
    backed_rate = statistics.median(rate for rate, _, _ in backed)
    redis_rate = statistics.median(rate for rate, _, _ in redis)
    ratio = backed_rate / redis_rate
    rows = [
        Row(
            f"daemon+redis backend acquire/s, {clients} clients",
            f"{backed_rate:,.0f}/s",
            f"{redis_rate:,.0f}/s (redis)",
            ratio,
            ">= 1.0x",
            ratio >= 1.0,
        )
    ]
    for label, q in (("p50", 0.50), ("p99", 0.99)):
        backed_q = _quantile([s for _, ss, _ in backed for s in ss], q)
        redis_q = _quantile([s for _, ss, _ in redis for s in ss], q)
        target = "<= 2 ms" if label == "p99" and clients == 8 else "info"
        rows.append(
            Row(
                f"daemon+redis backend {label} latency, {clients} clients",
                f"{backed_q / 1000:.3f} ms",
                f"{redis_q / 1000:.3f} ms (redis)",
                backed_q / redis_q,
                target,
                target == "info" or backed_q <= 2000,
            )
        )
    if clients == 8:
        rows.append(_cpu_row("daemon+redis backend", backed, ("daemon", "redis"), redis))
    return rows


def _cpu_row(side: str, ours: list[Result], servers: Sequence[str], redis: list[Result]) -> Row:
    """The CPU each grant costs the whole machine at 8 clients (medians over the rounds), with
    how busy the machine was and the servers' part: where the time goes when the ratio
    of throughputs is low."""
    ours_cpu, redis_cpu = _median_cpu(ours), _median_cpu(redis)
    parts = ", ".join(f"{n} {us:.0f}" for n, us in zip(servers, ours_cpu[2], strict=True))
    return Row(
        f"{side} CPU per grant, whole machine, 8 clients",
        f"{ours_cpu[0]:.0f} µs ({ours_cpu[1]:.0%} busy; {parts})",
        f"{redis_cpu[0]:.0f} µs ({redis_cpu[1]:.0%} busy; redis {redis_cpu[2][0]:.0f})",
        ours_cpu[0] / redis_cpu[0],
        "info",
        True,
    )


def _median_cpu(results: list[Result]) -> tuple[float, float, list[float]]:
    """µs per grant of the machine, its busy fraction, and µs per grant of each server."""
    cpus = [cpu for _, _, cpu in results]
    servers = [statistics.median(c.servers[i] for c in cpus) for i in range(len(cpus[0].servers))]
    return (
        statistics.median(c.machine for c in cpus),
        statistics.median(c.busy for c in cpus),
        servers,
    )


def _quantile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from common import print_table

    print_table(run())
