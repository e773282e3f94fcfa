"""Helpers for the integration tests: real `rpr` and `patience` processes talking to a real
`patience-daemon` on a real Unix socket, each test in its own private directories."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from daemon_support import Daemon, short_dir
from tools import BIN, PATIENCE, RPR


class World:
    """One test's surroundings: a short directory for sockets, and an environment whose
    configuration, state and cache live in tmp_path (never the host's files)."""

    def __init__(self, socket_dir: Path, home: Path) -> None:
        self.dir = socket_dir
        self.home = home
        self.socket = str(socket_dir / "run" / "d.sock")
        (home / "config").mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PATIENCE_", "RPR_", "XDG_"))
        }
        self.env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / "config"),
            XDG_STATE_HOME=str(home / "state"),
            XDG_CACHE_HOME=str(home / "cache"),
            PATIENCE_SYSTEM_CONFIG_DIR=str(home / "etc"),
        )

    def daemon(self, config: str = "") -> Daemon:
        """A daemon on this world's socket (not started); its storage is in the same place."""
        daemon = Daemon(self.dir, config)
        daemon.socket = self.socket
        return daemon

    def rpr(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(RPR, *args, timeout=timeout)

    def patience(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return self.run(PATIENCE, *args, timeout=timeout)

    def run(self, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.env,
            cwd=self.home,
            check=False,
        )

    def start(self, *argv: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=self.home,
        )

    def daemon_flags(self, resource_id: str | None = None) -> list[str]:
        flags = ["--daemon", "--daemon-socket", self.socket]
        return flags + (["--resource-id", resource_id] if resource_id else [])


@contextlib.contextmanager
def world(tmp_path: Path) -> Iterator[World]:
    with short_dir() as directory:
        yield World(directory, tmp_path)


def resource_states(daemon: Daemon, resource_id: str | None = None) -> list[dict[str, Any]]:
    """The daemon's view of its resources (the seed's SharedResource), as plain data."""
    with daemon.client() as client:
        return [dict(state) for state in client.resource_state(resource_id)]


def executions(db: Path, resource_id: str | None = None) -> list[dict[str, Any]]:
    """The execution records the daemon stored, oldest first, straight from its database."""
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        con.row_factory = sqlite3.Row
        rows = con.execute(
            "SELECT * FROM executions"
            + (" WHERE resource_id = ?" if resource_id else "")
            + " ORDER BY start_time",
            (resource_id,) if resource_id else (),
        ).fetchall()
    records = [dict(row) for row in rows]
    for record in records:
        record["command"] = json.loads(record["command"])
        record["labels"] = json.loads(record["labels"])
    return records


def most_in_window(starts: list[float], window: float) -> int:
    """The largest number of starts in any half-open span of `window` seconds."""
    starts = sorted(starts)
    best, first = 0, 0
    for last, at in enumerate(starts):
        while at - starts[first] >= window:
            first += 1
        best = max(best, last - first + 1)
    return best


def json_runs(stdout: str) -> list[dict[str, Any]]:
    return [
        row for row in (json.loads(line) for line in stdout.splitlines()) if row["type"] == "run"
    ]


def wait_for(predicate: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "warning:" in line]
