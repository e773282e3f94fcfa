"""The fleet's capacity: 1, 2, 4 and 8 daemons with the Redis backend, 8 client processes
each, one resource (tests/fleet_scenario.py, the scenario of tests/test_fleet_scale.py).
First under a limit never reached, so what is measured is what the fleet can grant; then at
a limit of 500 per second, where requests are refused and wait, which costs Redis more per
grant. Prints both tables (grants/s, Redis CPU, Redis work per grant) and, for the
projection in docs/multi-host.md, what a daemon without clients costs Redis and what one
redis-server does alone (redis-benchmark, when installed).

Everything shares one machine: on 2 cores the clients and daemons, not Redis, are the
bottleneck, so the grants/s column is this machine's; Redis's CPU and commands per grant are
what carries over to a fleet of real hosts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from common import Row
from daemon_support import short_dir
from fleet_scenario import Fleet, run_fleet
from redis_support import RedisServer

SIZES = (1, 2, 4, 8)
CLIENTS = 8
SECONDS = 8.0
LIMIT = 10**9  # per second: never reached
AT_LIMIT = 500  # per second: reached by every size
REST = 8  # daemons without clients, for the background load


def run() -> list[Row]:
    summaries = [
        run_fleet(Fleet(daemons, CLIENTS, LIMIT, 1.0, SECONDS)).summary() for daemons in SIZES
    ]
    print("fleet capacity: a limit never reached")
    print_capacity(summaries)
    print(f"at the limit: {AT_LIMIT} per 1 s")
    print_capacity(
        [run_fleet(Fleet(daemons, CLIENTS, AT_LIMIT, 1.0, SECONDS)).summary() for daemons in SIZES]
    )
    print(at_rest())
    alone = redis_alone()
    for name, rate in alone.items():
        print(f"redis-server alone, {name}: {rate:,.0f}/s (redis-benchmark, 50 connections)")
    base = summaries[0]["grants_per_s"]
    return [
        Row(
            f"fleet grants/s, {s['daemons']} daemon{'s' if s['daemons'] > 1 else ''}"
            f" x {CLIENTS} clients",
            f"{s['grants_per_s']:,.0f}/s",
            f"{base:,.0f}/s (1 daemon)",
            s["grants_per_s"] / base,
            "info",
            True,
        )
        for s in summaries
    ]


def print_capacity(summaries: list[dict[str, object]]) -> None:
    header = (
        "daemons",
        "clients",
        "grants/s",
        "Redis CPU",
        "Redis CPU/grant",
        "Redis commands/grant",
        "scripts/grant",
    )
    table = [header] + [
        (
            str(s["daemons"]),
            str(s["clients"]),
            f"{s['grants_per_s']:,.0f}",
            f"{s['redis_cpu_percent']:.0f}%",
            f"{s['redis_cpu_us_per_grant']:.0f} µs",
            f"{s['redis_commands_per_grant']:.1f}",
            f"{s['redis_scripts_per_grant']:.2f}",
        )
        for s in summaries
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))


def at_rest() -> str:
    """What a daemon without clients costs Redis (its outage watch, learned-limits check and
    fleet heartbeat), from REST daemons against none: the fleet's background load."""
    idle, busy = (run_fleet(Fleet(daemons, 0, LIMIT, 1.0, SECONDS)) for daemons in (0, REST))
    seconds = REST * busy.elapsed
    commands = (sum(busy.calls.values()) - sum(idle.calls.values())) / seconds
    scripts = busy.summary()["redis_scripts"] / seconds
    cpu = (busy.redis_cpu / busy.elapsed - idle.redis_cpu / idle.elapsed) / REST
    return (
        f"a daemon at rest: {commands:.1f} Redis commands/s ({scripts:.1f} scripts),"
        f" {1e6 * cpu:.0f} µs of Redis CPU per second ({REST} daemons against none)"
    )


def redis_alone() -> dict[str, float]:
    """Requests per second of plain commands against a fresh redis-server on a Unix socket,
    one at a time per connection and pipelined: one Redis core's ceiling on this machine."""
    program = shutil.which("redis-benchmark")
    if program is None:
        print("redis-benchmark is not installed (apt-get install redis-tools): skipped")
        return {}
    rates = {}
    with short_dir() as directory:
        server = RedisServer(directory).start()
        try:
            for pipeline in (1, 16):
                requests = str(200000 * pipeline)
                out = subprocess.run(
                    [
                        program,
                        "-s",
                        server.socket,
                        "-q",
                        "-c",
                        "50",
                        "-P",
                        str(pipeline),
                        "-n",
                        requests,
                        "-t",
                        "set,hset",
                    ],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=300,
                ).stdout
                for name, rate in re.findall(r"^(\S+): ([\d.]+) requests per second", out, re.M):
                    rates[f"{name}, pipeline {pipeline}"] = float(rate)
        finally:
            server.stop()
    return rates


if __name__ == "__main__":
    from common import print_table

    print_table(run())
