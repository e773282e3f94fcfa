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


def delay_accuracy() -> list[Row]:
    """`patience fixed --attempts 20 --delay 50ms -- false` against 19 x 50 ms plus 20 x the
    cost of one attempt. That cost comes from the same command without delays: 20 attempts
    minus 1 attempt, over 19. Runs alternate so that machine noise hits all three alike."""
    base = [PATIENCE, "fixed", "-q"]
    one, twenty, delayed = [], [], []
    for _ in range(15):
        one.append(wall([*base, "--attempts", "1", "--delay", "0", "--", "false"]))
        twenty.append(wall([*base, "--attempts", "20", "--delay", "0", "--", "false"]))
        delayed.append(wall([*base, "--attempts", "20", "--delay", "50ms", "--", "false"]))
    t1, t20, t50 = (statistics.median(x) for x in (one, twenty, delayed))
    attempt = (t20 - t1) / 19
    expected = 19 * 0.050 + 20 * attempt
    # Start-up is in both t50 and t20; the waits and attempts alone are t50 - (t1 - attempt).
    ours = t50 - (t1 - attempt)
    ratio = ours / expected
    return [
        Row(
            "delay accuracy: 20 x false, 50ms apart",
            ms(ours),
            ms(expected),
            ratio,
            "within 2%",
            abs(ratio - 1) <= 0.02,
        )
    ]


def run() -> list[Row]:
    return startup() + delay_accuracy()
