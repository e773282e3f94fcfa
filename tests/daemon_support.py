"""Helpers for the daemon tests: a real `patience-daemon` process on a real Unix socket in a
private temporary directory, stopped whatever happens, and raw line-level connections.

The daemon reads the shared configuration (system, user and project files, PATIENCE_*
variables), so every daemon here runs in its directory with an environment that points
those at that directory: the host's files never take part."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from patience.daemon.client import DaemonClient

BIN = Path(sys.executable).parent
DAEMON = str(BIN / "patience-daemon")
PYTHON = sys.executable
# patience-daemon's main() with housekeeping intervals of the test's choosing (lifecycle.Intervals).
WITH_INTERVALS = (
    "import json, sys; from patience.daemon import cli; from patience.daemon.lifecycle import"
    " Intervals; sys.exit(cli.main(sys.argv[2:], Intervals(**json.loads(sys.argv[1]))))"
)


@contextlib.contextmanager
def short_dir() -> Iterator[Path]:
    """A private directory with a short path: Unix socket paths are limited to 107 bytes,
    which pytest's tmp_path can exceed."""
    path = Path(tempfile.mkdtemp(prefix="pd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def isolated_env(directory: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The host's environment without any configuration of its own: the system and user
    configuration directories, cache and state are under `directory` (and empty unless a test
    writes there); PATIENCE_* and RPR_* variables are dropped. `extra` is added."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PATIENCE_", "RPR_", "XDG_", "STATE_DIRECTORY", "NOTIFY_SOCKET"))
    }
    env.update(
        PATIENCE_SYSTEM_CONFIG_DIR=str(directory / "etc"),
        XDG_CONFIG_HOME=str(directory / "config"),
        XDG_CACHE_HOME=str(directory / "cache"),
        XDG_STATE_HOME=str(directory / "state"),
    )
    env.update(extra or {})
    return env


def run_daemon(
    directory: Path, *args: str, env: Mapping[str, str] | None = None, timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """`patience-daemon ARGS` to completion, isolated in `directory` (also its cwd)."""
    return subprocess.run(
        [DAEMON, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=isolated_env(directory, env),
        cwd=directory,
    )


class Daemon:
    """One daemon process, run in `directory` and isolated there (see isolated_env). `config`
    is TOML text given with --config; storage goes into the same directory. `intervals`
    (patience.daemon.lifecycle.Intervals' fields) shortens its housekeeping intervals, so that
    a test need not wait them out."""

    def __init__(
        self,
        directory: Path,
        config: str = "",
        args: tuple[str, ...] = (),
        intervals: Mapping[str, float] | None = None,
    ) -> None:
        self.dir = directory
        self.socket = str(directory / "run" / "d.sock")
        self.config = directory / "config.toml"
        self.db = directory / "metrics.db"
        self.log = directory / "daemon.log"
        self.write_config(config)
        self.args = args
        self.intervals = intervals
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: str) -> None:
        if "storage_path" not in config:
            if "[daemon]" in config:
                config = config.replace("[daemon]", f'[daemon]\nstorage_path = "{self.db}"', 1)
            else:
                config = f'[daemon]\nstorage_path = "{self.db}"\n' + config
        self.config.write_text(config)

    def command(self) -> list[str]:
        flags = ["--socket", self.socket, "--config", str(self.config), *self.args]
        if self.intervals is not None:
            return [PYTHON, "-c", WITH_INTERVALS, json.dumps(self.intervals), *flags]
        return [DAEMON, *flags]

    def start(self, env: Mapping[str, str] | None = None, wait: bool = True) -> Daemon:
        """Start it; `env` adds variables to its isolated environment."""
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                env=isolated_env(self.dir, env),
                cwd=self.dir,
                start_new_session=True,
            )
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError), Raw(self.socket, timeout=2.0) as raw:
                if raw.ask('{"type":"ping"}').get("type") == "pong":
                    return
            time.sleep(0.02)
        raise AssertionError(f"daemon not ready after {timeout}s:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon ignored signal {sig}:\n{self.log_text()}") from None

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def client(self, tool: str = "repeater", client_id: str | None = None) -> DaemonClient:
        return DaemonClient(self.socket, tool, client_id, timeout=10.0)

    def raw(self, timeout: float = 10.0) -> Raw:
        return Raw(self.socket, timeout)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def rss_kib(self) -> int:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")


@contextlib.contextmanager
def running(
    config: str = "", args: tuple[str, ...] = (), intervals: Mapping[str, float] | None = None
) -> Iterator[Daemon]:
    """A started daemon in its own directory, killed at the end if still running."""
    with short_dir() as directory:
        daemon = Daemon(directory, config, args, intervals)
        try:
            daemon.start()
            yield daemon
        finally:
            daemon.ensure_stopped()


@contextlib.contextmanager
def running_many(
    config: str,
    count: int,
    intervals: Mapping[str, float] | None = None,
    env: Mapping[str, str] | None = None,
    args: Callable[[int], tuple[str, ...]] = lambda index: (),
) -> Iterator[list[Daemon]]:
    """`count` started daemons on one configuration (the Redis backend's tests), each in its
    own directory; `args(index)` gives one of them flags of its own. Killed at the end."""
    with contextlib.ExitStack() as stack:
        started = []
        for index in range(count):
            daemon = Daemon(stack.enter_context(short_dir()), config, args(index), intervals)
            stack.callback(daemon.ensure_stopped)
            started.append(daemon.start(env))
        yield started


class Raw:
    """A line-level connection, for sending exactly the bytes a test wants."""

    def __init__(self, path: str, timeout: float = 10.0) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buffer = b""

    def __enter__(self) -> Raw:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def line(self) -> bytes:
        """The next reply line (without newline); b"" at EOF."""
        while b"\n" not in self.buffer:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:  # closed by the daemon with our input unread
                chunk = b""
            if not chunk:
                rest, self.buffer = self.buffer, b""
                return rest
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line

    def ask(self, line: str | bytes) -> dict[str, object]:
        import json

        self.send(line.encode() + b"\n" if isinstance(line, str) else line + b"\n")
        reply = self.line()
        assert reply, "connection closed without a reply"
        result = json.loads(reply)
        assert isinstance(result, dict)
        return result


def as_user(uid: int, gid: int, action: Callable[[], str]) -> str:
    """Run `action` in a forked child that has become uid/gid; return what it reports. (A new
    Python process could not run as another user here: the interpreter lives in root's home.)"""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop privileges, act, report, leave without cleanup
        try:
            os.close(read)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            result = action()
        except BaseException as exc:
            result = f"{type(exc).__name__}: {exc}"
        os.write(write, result.encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        out = pipe.read().decode()
    os.waitpid(pid, 0)
    return out


def worker(code: str, *args: str) -> subprocess.Popen[str]:
    """A Python client process running `code` (argv available as sys.argv)."""
    return subprocess.Popen(
        [PYTHON, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs: list[subprocess.Popen[str]], timeout: float = 120.0) -> list[str]:
    """Wait for every worker, killing stragglers; their stdout, asserting each exited 0."""
    outputs = []
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=timeout)
            assert proc.returncode == 0, err
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return outputs
