"""rpr benchmarks (issue "rpr core"): drift, per-run overhead, start-up, memory."""

from __future__ import annotations

import json
import subprocess
import sys

from common import PYTHON, Row, ab, ms, tool

RPR = tool("rpr")


def drift() -> list[Row]:
    """`rpr interval --every 20ms --times 500 -- true` against the ideal 499 x 20 ms."""
    out = subprocess.run(
        [RPR, "interval", "--every", "20ms", "--times", "500", "--json", "--", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    runs = [r for r in rows if r["type"] == "run"]
    total = runs[-1]["actual_start"] - runs[0]["actual_start"]
    ideal = 499 * 0.020
    error = abs(total - ideal) / ideal
    p99 = rows[-1]["lateness"]["p99"]
    return [
        Row(
            "drift: total vs 499x20ms",
            f"{total:.4f} s",
            f"{ideal:.4f} s",
            total / ideal,
            "|err| <= 0.1%",
            error <= 0.001,
        ),
        Row("drift: start lateness p99", ms(p99), "2 ms", p99 / 0.002, "<= 1.0", p99 <= 0.002),
    ]


def overhead() -> list[Row]:
    """2000 runs of true: rpr against the bash loop a user would otherwise write."""
    ours, bash = ab(
        [[RPR, "count", "--times", "2000", "-q", "--", "true"]],
        [["bash", "-c", "for i in $(seq 2000); do /bin/true; done"]],
        rounds=5,
    )
    return [
        Row(
            "overhead: 2000 x true vs bash loop",
            ms(ours),
            ms(bash),
            ours / bash,
            "<= 1.0",
            ours <= bash,
        )
    ]


def startup() -> list[Row]:
    """One run of true: rpr against the venv's bare `python -c pass` plus /bin/true."""
    ours, floor = ab(
        [[RPR, "count", "--times", "1", "--", "true"]],
        [[PYTHON, "-c", "pass"], ["/bin/true"]],
        rounds=60,
    )
    return [
        Row(
            "start-up: rpr count --times 1",
            ms(ours),
            ms(floor),
            ours / floor,
            "<= 1.5",
            ours / floor <= 1.5,
        )
    ]


_PEAK = (
    "import resource, subprocess, sys\n"
    "subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def peak_rss_kib(times: int) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, RPR, "count", "--times", str(times), "--", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out)


def memory() -> list[Row]:
    small, large = peak_rss_kib(1000), peak_rss_kib(20000)
    return [
        Row(
            "memory: peak RSS 20000 vs 1000 runs",
            f"{large} KiB",
            f"{small} KiB",
            large / small,
            "<= +5 MiB",
            large <= small + 5 * 1024,
        )
    ]


def run() -> list[Row]:
    return drift() + overhead() + startup() + memory()
