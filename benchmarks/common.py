"""Shared helpers for the benchmarks: timing commands A/B alternately, medians, a table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
PYTHON = str(VENV_BIN / "python")


def tool(name: str) -> str:
    """The project's executable from the venv (what `make bench` installed)."""
    return str(VENV_BIN / name)


def wall(cmd: Sequence[str], env: dict[str, str] | None = None) -> float:
    """Seconds one run of cmd takes, output discarded."""
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - start


def ab(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]], rounds: int) -> tuple[float, float]:
    """Median seconds of A (a sequence of commands run one after another) and of B,
    measured alternately so that machine noise hits both alike."""
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(sum(wall(c) for c in a))
        tb.append(sum(wall(c) for c in b))
    return statistics.median(ta), statistics.median(tb)


class Row:
    """One line of the results table."""

    def __init__(self, name: str, ours: str, reference: str, ratio: float, target: str, ok: bool):
        self.name, self.ours, self.reference = name, ours, reference
        self.ratio, self.target, self.ok = ratio, target, ok


def print_table(rows: Sequence[Row]) -> None:
    header = ("benchmark", "ours", "reference", "ratio", "target", "")
    table = [header] + [
        (r.name, r.ours, r.reference, f"{r.ratio:.3f}", r.target, "ok" if r.ok else "MISSED")
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def cpu_note() -> str:
    return f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}"
