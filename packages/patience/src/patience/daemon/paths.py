"""Where the daemon's socket lives, and the checks that keep other users out of it.

Order: an explicit path (--socket), PATIENCE_DAEMON_SOCKET, the configured `socket_path`, then
a default: root uses /run/patience/daemon.sock; a user uses $XDG_RUNTIME_DIR/patience/daemon.sock,
or, without XDG_RUNTIME_DIR, a private directory in /tmp with a random name (so nobody can
create it first), recorded in the user's cache directory so every tool finds the same one.

Imported by the tools' client path: standard library only, nothing slow.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

SOCKET_NAME = "daemon.sock"
ROOT_SOCKET = "/run/patience/daemon.sock"
MAX_SOCKET_PATH = 107  # bytes: sun_path is 108 including the terminating NUL


class PathError(Exception):
    """No safe place for the socket; the message names the path and the fix."""


def resolve_socket(
    explicit: str | None = None,
    configured: str | None = None,
    env: Mapping[str, str] | None = None,
    uid: int | None = None,
) -> str:
    """The socket path a daemon should serve and a client should connect to."""
    env = os.environ if env is None else env
    for candidate in (explicit, env.get("PATIENCE_DAEMON_SOCKET"), configured):
        if candidate:
            return os.path.abspath(os.path.expanduser(candidate))
    return default_socket(env, os.geteuid() if uid is None else uid)


def default_socket(env: Mapping[str, str], uid: int) -> str:
    return ROOT_SOCKET if uid == 0 else user_socket(env, uid)


def user_socket(env: Mapping[str, str], uid: int) -> str:
    """A user's own socket: in XDG_RUNTIME_DIR when it is private, else in /tmp."""
    return _runtime_socket(env, uid) or os.path.join(private_tmp_dir(env, uid), SOCKET_NAME)


def _runtime_socket(env: Mapping[str, str], uid: int) -> str | None:
    runtime = env.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime) and _is_private_dir(runtime, uid):
        return os.path.join(runtime, "patience", SOCKET_NAME)
    return None


def is_default_socket(path: str, env: Mapping[str, str], uid: int) -> bool:
    """Whether `path` is the default socket, found without creating anything. A tool that
    auto-starts the daemon names the default path with --socket: it is still the default."""
    if uid == 0:
        default: str | None = ROOT_SOCKET
    else:
        default = _runtime_socket(env, uid)
        if default is None:
            try:
                recorded = _recorded_dir(_record_file(env))
            except (PathError, OSError):  # no HOME, or an unreadable record: no default
                return False
            if recorded and _is_private_dir(recorded, uid):
                default = os.path.join(recorded, SOCKET_NAME)
    return default is not None and os.path.abspath(path) == os.path.abspath(default)


def default_storage(socket_path: str, env: Mapping[str, str], uid: int) -> str:
    """Where the metrics database lives unless configured: in systemd's StateDirectory= when
    run by it, beside a socket the user chose (so two daemons on two sockets never mix their
    metrics), else the user's state directory."""
    service_state = env.get("STATE_DIRECTORY", "").split(":")[0]
    if service_state:
        return os.path.join(service_state, "metrics.db")
    if not is_default_socket(socket_path, env, uid):
        return os.path.splitext(socket_path)[0] + ".db"
    if uid == 0:
        return "/var/lib/patience/metrics.db"
    state = env.get("XDG_STATE_HOME") or os.path.join(_home(env), ".local", "state")
    return os.path.join(state, "patience", "metrics.db")


def private_tmp_dir(env: Mapping[str, str], uid: int) -> str:
    """The user's private socket directory in /tmp, created on first use.

    Its name is random and recorded in the user's cache directory under a lock, so concurrent
    first uses agree on one directory and no other user can predict and squat it. A recorded
    directory that is gone or no longer private is replaced."""
    import fcntl

    record = _record_file(env)
    os.makedirs(os.path.dirname(record), mode=0o700, exist_ok=True)
    lock = os.open(record + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = _recorded_dir(record)
        if current and _is_private_dir(current, uid):
            return current
        base = env.get("TMPDIR") or "/tmp"
        while True:
            candidate = os.path.join(base, f"patience-{uid}-{os.urandom(8).hex()}")
            try:
                os.mkdir(candidate, 0o700)
                break
            except FileExistsError:
                continue
        temporary = f"{record}.{os.getpid()}"
        with open(temporary, "w", encoding="utf-8") as f:
            f.write(candidate + "\n")
        os.replace(temporary, record)
        return candidate
    finally:
        os.close(lock)


def _record_file(env: Mapping[str, str]) -> str:
    """Where the name of the user's private /tmp directory is recorded."""
    cache = env.get("XDG_CACHE_HOME") or os.path.join(_home(env), ".cache")
    return os.path.join(cache, "patience", "runtime-dir")


def _recorded_dir(record: str) -> str:
    try:
        with open(record, encoding="utf-8") as f:
            return f.read().strip()
    except FileNotFoundError:
        return ""


def _home(env: Mapping[str, str]) -> str:
    home = env.get("HOME")
    if not home:
        raise PathError(
            "cannot find a private directory for the daemon socket: neither XDG_RUNTIME_DIR "
            "nor HOME is set (set PATIENCE_DAEMON_SOCKET or use --socket)"
        )
    return home


def _is_private_dir(path: str, uid: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == uid and st.st_mode & 0o077 == 0


def prepare_socket_dir(directory: str, uid: int, group: int | None) -> None:
    """Create the socket's directory private (0700, or 0750 for a served group), or check
    that an existing one is safe: owned by us or root, and not writable by others unless
    sticky (like /tmp)."""
    mode = 0o700 if group is None else 0o750
    try:
        os.mkdir(directory, mode)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        os.mkdir(directory, mode)
    except FileExistsError:
        check_socket_dir(directory, uid)
        return
    os.chmod(directory, mode)  # the umask may have removed bits we want
    if group is not None:
        os.chown(directory, -1, group)


def check_socket_dir(directory: str, uid: int) -> None:
    try:
        st = os.lstat(directory)
    except OSError as exc:
        raise PathError(f"socket directory {directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(
            f"socket directory {directory} is not a directory (choose another --socket)"
        )
    if st.st_uid not in (uid, 0):
        raise PathError(
            f"socket directory {directory} belongs to uid {st.st_uid}, not to you "
            "(someone else created it; choose another --socket)"
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise PathError(
            f"socket directory {directory} is writable by other users "
            f"(chmod go-w {directory}, or choose another --socket)"
        )


def check_socket_length(path: str) -> None:
    size = len(os.fsencode(path))
    if size > MAX_SOCKET_PATH:
        raise PathError(
            f"socket path {path} is {size} bytes, the limit is {MAX_SOCKET_PATH} "
            "(choose a shorter --socket)"
        )


def socket_owner_ok(path: str, uid: int) -> bool:
    """Clients connect only to a socket owned by themselves or root: a socket another user
    placed there would receive what they send."""
    try:
        st = os.lstat(path)
    except OSError:
        return True  # nothing there: connecting fails with a clear error anyway
    return st.st_uid in (uid, 0)
