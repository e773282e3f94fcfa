"""patience benchmarks (issue "patience"): start-up, and how exactly delays are waited."""

from __future__ import annotations

import statistics

from common import PYTHON, Row, ab, ms, tool, wall

PATIENCE = tool("patience")


def startup() -> list[Row]:
    """`patience fixed -- true` against the venv's bare `python -c pass` plus /bin/true:
    what `rpr` pays each time it spawns patience."""
    ours, floor = ab(
        [[PATIENCE, "fixed", "--", "true"]],
        [[PYTHON, "-c", "pass"], ["/bin/true"]],
        rounds=60,
    )
    return [
        Row(
            "start-up: patience fixed -- true",
            ms(ours),
            ms(floor),
            ours / floor,
            "<= 1.5",
            ours / floor <= 1.5,
        )
    ]


# The ideal retry loop: spawn, wait, sleep exactly, again. Nothing else.
_IDEAL = (
    "import os, sys, time\n"
    "for i in range(int(sys.argv[1])):\n"
    "    if i:\n"
    "        time.sleep(float(sys.argv[2]))\n"
    "    os.waitpid(os.posix_spawnp('false', ['false'], os.environ), 0)\n"
)


def delay_accuracy() -> list[Row]:
    """`patience fixed --attempts 20 --delay 50ms -- false` against 19 x 50 ms plus the cost of
    the attempts. An attempt that follows a 50 ms sleep costs more than one run back to back
    (the CPU idled; caches went cold), so the cost is measured the same way: by the ideal
    loop above, spawning `false` 20 times with exact 50 ms sleeps. Start-up is taken out of
    both by subtracting a one-attempt run of each. Runs alternate, medians of 21."""
    ours_1, ours_20, ideal_1, ideal_20 = [], [], [], []
    for _ in range(21):
        ours_1.append(wall([PATIENCE, "fixed", "-q", "--attempts", "1", "--", "false"]))
        ours_20.append(
            wall([PATIENCE, "fixed", "-q", "--attempts", "20", "--delay", "50ms", "--", "false"])
        )
        ideal_1.append(wall([PYTHON, "-c", _IDEAL, "1", "0.05"]))
        ideal_20.append(wall([PYTHON, "-c", _IDEAL, "20", "0.05"]))
    med = statistics.median
    ours = med(ours_20) - med(ours_1)
    ideal = med(ideal_20) - med(ideal_1)
    ratio = ours / ideal
    return [
        Row(
            "delay accuracy: 20 x false, 50ms apart",
            ms(ours),
            ms(ideal),
            ratio,
            "within 2%",
            abs(ratio - 1) <= 0.02,
        )
    ]


def run() -> list[Row]:
    return startup() + delay_accuracy()
