"""Find the daemon, check that it answers, and start it when it does not.

Auto-start runs `patience-daemon --socket PATH` detached: its own session (a Ctrl-C meant
for the tool does not reach it), stdin from /dev/null, its output appended to
`daemon.log` in the user's state directory. Two tools auto-starting at the same moment both
spawn one; the daemon's lock file lets exactly one serve and the other exits at once, and
both tools then wait for, and connect to, the winner. A daemon started while the previous one
is still stopping (a restart) loses to it the same way: once that one has exited, the tool
starts another at once.
"""

from __future__ import annotations

import os
import sys
import time

from patience import process
from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable

__all__ = ["POLL", "RACE_GRACE", "DaemonManager", "DaemonNotRunning", "log_path"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Mapping

POLL = 0.02  # seconds between readiness checks while a daemon starts
RACE_GRACE = 1.0  # seconds a start-race winner has to answer once our daemon has exited


class DaemonNotRunning(Exception):
    """No daemon answers and none could be started; the message says why and what to do."""


class DaemonManager:
    def __init__(
        self,
        socket_path: str,
        tool: str,
        *,
        auto_start: bool,
        start_timeout: float,
        log_level: str | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.tool = tool
        self.auto_start = auto_start
        self.start_timeout = start_timeout
        self.log_level = log_level  # the tool's log_level setting, for a daemon it starts

    def ensure(self, client: DaemonClient | None = None) -> None:
        """Return once a daemon answers on the socket (through `client` when given, whose
        connection then stays open), starting one if allowed; else DaemonNotRunning."""
        reason = self.check(client)
        if reason is None:
            return
        if not self.auto_start:
            raise DaemonNotRunning(reason)
        self.wait_ready(self.start(), client)

    def check(self, client: DaemonClient | None = None) -> str | None:
        """None when a daemon answers a ping, else why not."""
        if client is None:
            client = DaemonClient(self.socket_path, self.tool, timeout=self.start_timeout)
            try:
                return self.check(client)
            finally:
                client.close()
        try:
            client.ping()
        except (DaemonUnavailable, DaemonError) as exc:
            client.close()
            return str(exc)
        return None

    def start(self) -> subprocess.Popen[bytes]:
        """Spawn a detached daemon on our socket. A loser of a start race exits by itself."""
        import subprocess

        command = [*_daemon_command(), "--socket", self.socket_path]
        if self.log_level:
            command += ["--log-level", self.log_level]
        log = log_path(os.environ)
        os.makedirs(os.path.dirname(log), mode=0o700, exist_ok=True)
        with open(log, "ab") as out:
            try:
                return subprocess.Popen(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=out,
                    start_new_session=True,
                    # Not the tool's directory: a daemon outlives it, must not pin it, and must
                    # not take that project's file as every later tool's configuration (the
                    # tools declare the limits of their own project files themselves).
                    cwd="/",
                )
            except OSError as exc:
                raise DaemonNotRunning(
                    f"cannot start {command[0]}: {exc.strerror or exc} (is patience-cli"
                    " installed? or use --no-daemon-auto-start)"
                ) from None

    def wait_ready(self, daemon: subprocess.Popen[bytes], client: DaemonClient | None) -> None:
        """Wait until a daemon answers, up to the start timeout. Ours may exit at once, having
        lost the lock to another: while the holder (its pid file) lives, it is starting or
        stopping; one that stops without answering leaves the place to a new daemon of ours.
        With no live holder, one answers within RACE_GRACE or none will. Plain sleeps: this may
        run in a background thread, which must not drain the main thread's signal wakeups."""
        deadline = time.monotonic() + self.start_timeout
        exited = float("inf")
        holder_seen = False
        while True:
            reason = self.check(client)
            if reason is None:
                return
            now = time.monotonic()
            if exited == float("inf") and daemon.poll() is not None:
                exited = now
            if exited != float("inf"):
                if _alive(_read_pid(self.socket_path + ".pid")):
                    holder_seen = True
                elif holder_seen:  # the holder stopped without serving: ours may take over
                    daemon, exited, holder_seen = self.start(), float("inf"), False
            if now >= deadline or (not holder_seen and now >= exited + RACE_GRACE):
                raise DaemonNotRunning(
                    f"patience-daemon did not start on {self.socket_path}"
                    f" ({_last_line(log_path(os.environ))})"
                )
            if process.interrupted() is not None:
                raise DaemonNotRunning("interrupted while waiting for patience-daemon to start")
            time.sleep(POLL)


def log_path(env: Mapping[str, str]) -> str:
    """Where auto-started daemons write: $XDG_STATE_HOME/patience/daemon.log."""
    state = env.get("XDG_STATE_HOME") or os.path.join(
        env.get("HOME") or os.path.expanduser("~"), ".local", "state"
    )
    return os.path.join(state, "patience", "daemon.log")


def _daemon_command() -> list[str]:
    """`patience-daemon` from PATH, else the one installed beside this Python (a venv that
    is not on PATH), else the module run by this Python."""
    import shutil

    found = shutil.which("patience-daemon")
    if found:
        return [found]
    beside = os.path.join(os.path.dirname(sys.executable), "patience-daemon")
    if os.access(beside, os.X_OK):
        return [beside]
    code = "import sys; from patience.daemon.cli import main; sys.exit(main())"
    return [sys.executable, "-c", code]


def _read_pid(path: str) -> int | None:
    try:
        with open(path, "rb") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int | None) -> bool:
    """Whether process `pid` runs; a daemon this tool started earlier and that has exited is
    reaped here (a zombie would look alive)."""
    if pid is None or pid <= 0:
        return False
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 4096))
            lines = f.read().decode(errors="replace").strip().splitlines()
    except OSError:
        lines = []
    return f"last log line: {lines[-1]}; log: {path}" if lines else f"see {path}"
