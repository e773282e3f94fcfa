"""Helpers for end-to-end tests: run the real executables from the project's venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
RPR = str(BIN / "rpr")
PATIENCE = str(BIN / "patience")
DAEMON = str(BIN / "patience-daemon")


def env(**extra: str) -> dict[str, str]:
    e = dict(os.environ)
    e["PATH"] = f"{BIN}{os.pathsep}{e.get('PATH', '')}"
    e.update(extra)
    return e


def run(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    kw.setdefault("env", env())
    return subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, check=False, **kw
    )


def rpr(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return run(RPR, *args, **kw)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def runs_and_summary(text: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rows = json_lines(text)
    assert rows and rows[-1]["type"] == "summary", text
    return [r for r in rows if r["type"] == "run"], rows[-1]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie waiting for its parent to reap it is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
