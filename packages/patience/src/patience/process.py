"""Run one command: the single process runner shared by `rpr` and `patience`.

The child runs from argv (no shell) in its own process group with stdin from /dev/null.
Output is either inherited (byte for byte, no copy through us), discarded, or captured
through pipes and handed chunk by chunk to a sink that forwards it, so memory stays bounded
whatever the output size. A timeout sends SIGTERM to the whole group, then SIGKILL after a
grace period. SIGINT/SIGTERM/SIGHUP sent to the tool are forwarded to every live child group.

Start-up matters (rpr spawns patience once per run), so this module uses `os.posix_spawnp`
and `_signal` directly: `subprocess` and the enum-based `signal` wrapper cost ~5-10 ms each
to import.
"""

from __future__ import annotations

import _signal
import errno
import os
import select
import time

from patience.exits import ExitStatus

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "DISCARD",
    "INHERIT",
    "RunResult",
    "Sink",
    "SpawnError",
    "install_signal_forwarding",
    "interrupted",
    "run",
    "sleep_until",
    "write_all",
]

SIGINT = _signal.SIGINT
SIGTERM = _signal.SIGTERM
SIGHUP = _signal.SIGHUP
SIGKILL = _signal.SIGKILL
_CHUNK = 65536
# poll() takes a C int of milliseconds (at most ~24.8 days): a longer wait is cut to polls of
# at most a day, and every wait loop looks at the clock again after each one.
_LONGEST_POLL_MS = 86_400_000

# How a run's output is handled: inherit our stdout/stderr, discard it, or feed a sink.
INHERIT = "inherit"
DISCARD = "discard"


class Sink:
    """Receives captured output in order as it arrives; subclasses forward or inspect it."""

    def feed(self, stream: int, data: bytes) -> None:
        """`stream` is 1 for the child's stdout, 2 for its stderr."""

    def close(self) -> None:
        """Called once after the child's output has been drained."""


class SpawnError(Exception):
    """The command could not be started; `exit_code` is 127 (not found) or 126 (not runnable)."""

    def __init__(self, command: str, exit_code: int, reason: str) -> None:
        super().__init__(f"{command}: {reason}")
        self.command = command
        self.exit_code = exit_code
        self.reason = reason


class RunResult:
    """What happened to one run. Times are on the monotonic clock, in seconds."""

    __slots__ = ("duration", "exit_code", "interrupted", "signal", "start", "timed_out")

    def __init__(
        self,
        start: float,
        duration: float,
        exit_code: int | None,
        signal: int | None,
        timed_out: bool,
        interrupted: bool,
    ) -> None:
        self.start = start
        self.duration = duration
        self.exit_code = exit_code
        self.signal = signal
        self.timed_out = timed_out
        self.interrupted = interrupted

    @property
    def status(self) -> int:
        """Shell-style status: the exit code, 124 after a timeout, 128+N when killed by N."""
        if self.timed_out:
            return ExitStatus.TIMED_OUT
        if self.signal is not None:
            return ExitStatus.killed_by(self.signal)
        return self.exit_code if self.exit_code is not None else ExitStatus.FAILED

    def describe(self) -> str:
        """A short reason for messages: 'exit code 7', 'timed out', 'killed by signal 9'."""
        if self.timed_out:
            return "timed out"
        if self.signal is not None:
            return f"killed by signal {self.signal}"
        return f"exit code {self.exit_code}"


class _Interrupts:
    """Signals received by the tool, and the child groups they must be forwarded to."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.count = 0
        self.at = 0.0
        self.groups: set[int] = set()
        self.wakeup_r = -1

    def handler(self, signum: int, _frame: object) -> None:
        self.count += 1
        if self.signal is None:
            self.signal = signum
            self.at = time.monotonic()
        # A second Ctrl-C means "now": escalate straight to SIGKILL.
        forward = SIGKILL if self.count > 1 else signum
        for pgid in list(self.groups):
            _killpg(pgid, forward)


interrupts = _Interrupts()


def install_signal_forwarding() -> None:
    """Route SIGINT/SIGTERM/SIGHUP to the live child groups instead of killing the tool
    outright: the children run in their own groups, so a closed terminal's SIGHUP would
    otherwise kill the tool and orphan them. A SIGHUP ignored at start (`nohup`) stays
    ignored.

    A wakeup pipe makes any wait in the main thread return as soon as a signal arrives.
    """
    r, w = os.pipe()
    os.set_blocking(r, False)
    os.set_blocking(w, False)
    _signal.set_wakeup_fd(w, warn_on_full_buffer=False)
    interrupts.wakeup_r = r
    _signal.signal(SIGINT, interrupts.handler)
    _signal.signal(SIGTERM, interrupts.handler)
    if _signal.getsignal(SIGHUP) != _signal.SIG_IGN:
        _signal.signal(SIGHUP, interrupts.handler)


def interrupted() -> int | None:
    """The first signal the tool received, if any."""
    return interrupts.signal


def sleep_until(deadline: float) -> bool:
    """Sleep until the monotonic deadline; return False early if the tool was interrupted."""
    if interrupts.signal is not None:
        return False
    if deadline <= time.monotonic():
        return True
    poller = select.poll()
    if interrupts.wakeup_r >= 0:
        poller.register(interrupts.wakeup_r, select.POLLIN)
    while interrupted() is None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return True
        if remaining > 0.003 and interrupts.wakeup_r >= 0:
            # poll() counts whole milliseconds: wake a little early, then sleep precisely.
            _poll(poller, (remaining - 0.002) * 1000)
            _drain(interrupts.wakeup_r)
        else:
            time.sleep(remaining)
    return False


def _poll(poller: select.poll, ms: float | None) -> list[tuple[int, int]]:
    """Wait for an event for at most `ms` milliseconds, whole ones (None: no limit), or a day
    if that is shorter: the callers loop until their own deadline."""
    return poller.poll(None if ms is None else int(min(ms, _LONGEST_POLL_MS)))


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except (BlockingIOError, OSError):
        pass


def _killpg(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_RESET_SIGNALS = tuple(
    getattr(_signal, name)
    for name in ("SIGPIPE", "SIGXFSZ", "SIGINT", "SIGTERM", "SIGQUIT", "SIGHUP")
    if hasattr(_signal, name)
)


_null_fd = -1


def _devnull() -> int:
    """/dev/null, opened once (not inherited): stdin of every run, output of a discarded one.
    Reusing it spares an open and a close per run."""
    global _null_fd
    if _null_fd < 0:
        _null_fd = os.open(os.devnull, os.O_RDWR)
    return _null_fd


def _spawn(
    argv: Sequence[str],
    env: Mapping[str, str] | None,
    stdout: int | None,
    stderr: int | None,
) -> int:
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_DUP2, _devnull(), 0)
    ]
    if stdout is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stdout, 1))
    if stderr is not None:
        actions.append((os.POSIX_SPAWN_DUP2, stderr, 2))
    path = _resolve(argv[0], env)
    spawn = os.posix_spawn if path is not None else os.posix_spawnp
    try:
        return spawn(
            path or argv[0],
            list(argv),
            os.environ if env is None else env,
            file_actions=actions,
            setpgroup=0,
            # Python ignores SIGPIPE; the child must get the default dispositions back.
            setsigdef=_RESET_SIGNALS,
            setsigmask=(),
        )
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            raise SpawnError(argv[0], ExitStatus.NOT_FOUND, "command not found") from None
        reason = exc.strerror or "cannot execute"
        raise SpawnError(argv[0], ExitStatus.CANNOT_EXECUTE, reason) from None


_resolved: dict[tuple[str, str], str] = {}


def _resolve(name: str, env: Mapping[str, str] | None) -> str | None:
    """The executable's path, searched in PATH once and remembered (as a shell's hash does):
    rpr runs the same command thousands of times. None when posix_spawnp should search."""
    if "/" in name:
        return name
    search = (os.environ if env is None else env).get("PATH", os.defpath)
    key = (name, search)
    found = _resolved.get(key)
    if found is None:
        for directory in search.split(os.pathsep):
            candidate = os.path.join(directory or ".", name)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                found = _resolved[key] = candidate
                break
    return found


def run(
    argv: Sequence[str],
    *,
    output: str | Sink = INHERIT,
    timeout: float | None = None,
    kill_after: float = 5.0,
    env: Mapping[str, str] | None = None,
    on_start: Callable[[float], None] | None = None,
    watch_signals: bool = True,
) -> RunResult:
    """Run argv to completion and return what happened.

    `watch_signals` is True in the main thread, where the signal wakeup pipe is read; worker
    threads leave it False and rely on the forwarded signal ending their child.
    """
    read_fds: dict[int, int] = {}
    child_out: int | None = None
    child_err: int | None = None
    to_close: list[int] = []
    if isinstance(output, Sink):
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        read_fds = {r1: 1, r2: 2}
        child_out, child_err = w1, w2
        to_close = [w1, w2]
    elif output == DISCARD:
        child_out = child_err = _devnull()
    start = time.monotonic()
    try:
        pid = _spawn(argv, env, child_out, child_err)
    except SpawnError:
        for fd in (*to_close, *read_fds):
            os.close(fd)
        raise
    for fd in to_close:
        os.close(fd)
    interrupts.groups.add(pid)
    if interrupts.signal is not None:
        _killpg(pid, interrupts.signal)
    if on_start is not None:
        on_start(start)
    try:
        timed_out = _wait(pid, start, read_fds, output, timeout, kill_after, watch_signals)
    finally:
        interrupts.groups.discard(pid)
    _, status = os.waitpid(pid, 0)
    end = time.monotonic()
    if timed_out or interrupts.signal is not None:
        # Stragglers of a killed group (a grandchild that ignored TERM) must not outlive us.
        _killpg(pid, SIGKILL)
    if isinstance(output, Sink):
        output.close()
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    return RunResult(start, end - start, code, sig, timed_out, interrupts.signal is not None)


def _wait(
    pid: int,
    start: float,
    read_fds: dict[int, int],
    output: str | Sink,
    timeout: float | None,
    kill_after: float,
    watch_signals: bool,
) -> bool:
    """Pump output until the child exits; enforce the timeout. Returns True if it timed out."""
    poller = select.poll()
    pidfd = _pidfd(pid)
    if pidfd >= 0:
        poller.register(pidfd, select.POLLIN)
    for fd in read_fds:
        poller.register(fd, select.POLLIN)
    wakeup = interrupts.wakeup_r if watch_signals else -1
    if wakeup >= 0:
        poller.register(wakeup, select.POLLIN)
    term_deadline = start + timeout if timeout else None
    kill_deadline: float | None = None
    timed_out = False
    try:
        while True:
            now = time.monotonic()
            if interrupts.signal is not None and kill_deadline is None:
                kill_deadline = interrupts.at + kill_after
            if term_deadline is not None and now >= term_deadline and not timed_out:
                timed_out = True
                _killpg(pid, SIGTERM)
                kill_deadline = now + kill_after
            if kill_deadline is not None and now >= kill_deadline:
                _killpg(pid, SIGKILL)
                kill_deadline = now + 3600.0
            deadlines = [d for d in (term_deadline if not timed_out else None, kill_deadline) if d]
            if pidfd < 0:
                deadlines.append(now + 0.01)
            wait_ms = None if not deadlines else max(0.0, (min(deadlines) - now) * 1000 + 1)
            exited = False
            for fd, _ in _poll(poller, wait_ms):
                if fd == pidfd:
                    exited = True
                elif fd == wakeup:
                    _drain(wakeup)
                else:
                    _pump(fd, read_fds, output, poller)
            if pidfd < 0 and os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                exited = True
            if exited:
                _take_rest(read_fds, output, poller)
                return timed_out
    finally:
        if pidfd >= 0:
            os.close(pidfd)
        for fd in read_fds:
            os.close(fd)
        read_fds.clear()


def _take_rest(read_fds: dict[int, int], output: str | Sink, poller: select.poll) -> None:
    """Take what is already in the pipes once the child exited: grandchildren holding them
    open do not keep the run alive."""
    for fd in list(read_fds):
        os.set_blocking(fd, False)
        while fd in read_fds and _pump(fd, read_fds, output, poller):
            pass


def _pump(fd: int, read_fds: dict[int, int], output: str | Sink, poller: select.poll) -> bool:
    """Read one chunk from fd into the sink. False at end of stream (fd closed) or no data."""
    try:
        data = os.read(fd, _CHUNK)
    except BlockingIOError:
        return False
    if not data:
        poller.unregister(fd)
        os.close(fd)
        del read_fds[fd]
        return False
    if isinstance(output, Sink):
        output.feed(read_fds[fd], data)
    return True


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return -1


def write_all(fd: int, data: bytes | memoryview) -> None:
    """Write every byte (os.write may write less than asked on pipes)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
