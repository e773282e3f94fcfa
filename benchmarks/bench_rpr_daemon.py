"""What coordination costs each run (issue 13): `rpr count --times 2000 --daemon -- true`
against the same loop without `--daemon`, on a daemon in memory and on a daemon with the
Redis backend (a redis-server on a Unix socket, persistence off).

Rounds alternate the two sides of a pair (no daemon, then the daemon), so that machine noise
hits both alike; the ratio is the median of the rounds' ratios. Nothing is configured for
the resource (`true`): every run takes a token and sends its record, and the daemon decides
without a limit, the case where asking for tokens ahead applies.
"""

from __future__ import annotations

import os
import shutil
import signal
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_daemon import _start_daemon, _start_redis
from common import Row, ms, tool, wall

RUNS = 2000
ROUNDS = 5
TARGET = 1.2


def run() -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="bench-rpr-daemon-", dir="/tmp"))
    procs = []
    try:
        procs.append(_start_daemon(directory, "d"))
        procs.append(_start_redis(directory))
        redis_url = f"unix://{directory / 'r.sock'}"
        procs.append(
            _start_daemon(directory, "b", f'backend = "redis"\nredis_url = "{redis_url}"\n')
        )
        env = _isolated(directory)
        return [
            _row("in memory", directory / "d.sock", env),
            _row("Redis backend", directory / "b.sock", env),
        ]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def _row(label: str, socket: Path, env: dict[str, str]) -> Row:
    plain = [tool("rpr"), "count", "--times", str(RUNS), "--", "true"]
    daemon = [*plain[:-2], "--daemon", "--daemon-socket", str(socket), "--no-daemon-auto-start"]
    daemon += ["--", "true"]
    # Warm up (the daemon's first client, its database), and fail loudly if rpr does.
    subprocess.run(
        daemon, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=True
    )
    alone, coordinated = [], []
    for _ in range(ROUNDS):
        alone.append(wall(plain, env))
        coordinated.append(wall(daemon, env))
    ratio = statistics.median(c / a for a, c in zip(alone, coordinated, strict=True))
    return Row(
        f"rpr --daemon ({label}): {RUNS} x true vs no daemon",
        ms(statistics.median(coordinated)),
        ms(statistics.median(alone)),
        ratio,
        f"<= {TARGET}",
        ratio <= TARGET,
    )


def _isolated(directory: Path) -> dict[str, str]:
    """The environment without the host's configuration (only what the command line says)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PATIENCE_", "RPR_", "XDG_"))
    }
    env.update(PATIENCE_SYSTEM_CONFIG_DIR=str(directory), XDG_CONFIG_HOME=str(directory))
    return env


if __name__ == "__main__":
    from common import print_table

    print_table(run())
