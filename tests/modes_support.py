"""Helpers for the end-to-end tests of rpr's advanced modes: run rpr with --json and read
the time between runs."""

from __future__ import annotations

import subprocess
from itertools import pairwise
from typing import Any

from tools import rpr, runs_and_summary


def json_runs(
    *args: str, **kw: Any
) -> tuple[list[dict[str, Any]], dict[str, Any], subprocess.CompletedProcess[str]]:
    """Run `rpr ARGS` (which must include --json); return its run records, summary, process."""
    proc = rpr(*args, **kw)
    runs, summary = runs_and_summary(proc.stdout)
    return runs, summary, proc


def pauses(runs: list[dict[str, Any]]) -> list[float]:
    """End of each run to when the next was due (what the backoff modes control)."""
    return [b["scheduled_start"] - (a["actual_start"] + a["duration"]) for a, b in pairwise(runs)]


def spacings(runs: list[dict[str, Any]]) -> list[float]:
    """Due time of each run to that of the next (what interval-like modes control). Due
    times, not actual starts: a start delayed by a busy machine does not move the schedule."""
    return [b["scheduled_start"] - a["scheduled_start"] for a, b in pairwise(runs)]


def close_to(measured: list[float], expected: list[float], slack: float = 0.4) -> bool:
    """Each measured time is at least its expected value (less 15 ms) and not far above it."""
    return len(measured) == len(expected) and all(
        e - 0.015 <= m <= e + slack for m, e in zip(measured, expected, strict=True)
    )


def usage_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> bool:
    """rpr refused the command line: exit 2, one line on stderr naming the problem."""
    lines = proc.stderr.splitlines()
    return (
        proc.returncode == 2
        and len(lines) == 1
        and lines[0].startswith("rpr: ")
        and all(f in lines[0] for f in fragments)
        and proc.stdout == ""
    )
