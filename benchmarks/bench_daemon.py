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
from pathlib import Path

from common import PYTHON, Row, tool

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
        results: dict[tuple[str, int], list[tuple[float, list[int]]]] = {}
        for clients in CLIENTS:
            sides = [("ours", "d.sock"), ("redis", "r.sock")]
            if clients in BACKEND_CLIENTS:
                sides.append(("ours+redis", "b.sock"))
            for _ in range(ROUNDS):
                for kind, name in sides:
                    results.setdefault((kind, clients), []).append(
                        _round(kind, str(directory / name), clients)
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


def _round(kind: str, path: str, clients: int) -> tuple[float, list[int]]:
    """Requests per second over the timed span, and every request's latency in µs."""
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
    samples: list[int] = []
    for proc in procs:
        out, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            raise SystemExit(f"bench_daemon: a {kind} worker failed")
        samples.extend(json.loads(out))
    return len(samples) / SECONDS, samples


def _rows(results: dict[tuple[str, int], list[tuple[float, list[int]]]]) -> list[Row]:
    rows = []
    for clients in CLIENTS:
        ours = results[("ours", clients)]
        redis = results[("redis", clients)]
        ours_rate = statistics.median(rate for rate, _ in ours)
        redis_rate = statistics.median(rate for rate, _ in redis)
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
            ours_q = _quantile([s for _, ss in ours for s in ss], q)
            redis_q = _quantile([s for _, ss in redis for s in ss], q)
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
        if clients in BACKEND_CLIENTS:
            rows += _backend_rows(results[("ours+redis", clients)], redis, clients)
    return rows


def _backend_rows(
    backed: list[tuple[float, list[int]]], redis: list[tuple[float, list[int]]], clients: int
) -> list[Row]:
    """The daemon with the Redis backend against Redis alone: at least its throughput, and
    at 8 clients a p99 of at most 2 ms."""
    backed_rate = statistics.median(rate for rate, _ in backed)
    redis_rate = statistics.median(rate for rate, _ in redis)
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
        backed_q = _quantile([s for _, ss in backed for s in ss], q)
        redis_q = _quantile([s for _, ss in redis for s in ss], q)
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
    return rows


def _quantile(samples: list[int], q: float) -> float:
    ordered = sorted(samples)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from common import print_table

    print_table(run())
