"""Where the daemon's socket lives, and the checks that keep other users out of it.

Order: an explicit path (--socket), PATIENCE_DAEMON_SOCKET, the configured `socket_path`, then
a default: root uses /run/patience/daemon.sock; a user uses $XDG_RUNTIME_DIR/patience/daemon.sock,
or, without XDG_RUNTIME_DIR, a private directory in /tmp with a random name (so nobody can
create it first), recorded in the user's cache directory so every tool finds the same one.

The daemon's own files (lock, pid file, metrics database) are made here too, safely even in a
directory other users share: see open_private_file.

Imported by the tools' client path: standard library only, nothing slow.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "MAX_SOCKET_PATH",
    "ROOT_SOCKET",
    "SOCKET_ELSEWHERE",
    "SOCKET_NAME",
    "PathError",
    "check_existing_file",
    "check_private_file",
    "check_socket_dir",
    "check_socket_length",
    "default_socket",
    "default_storage",
    "is_default_socket",
    "open_dir",
    "open_private_file",
    "prepare_socket_dir",
    "private_tmp_dir",
    "remove_own_file",
    "resolve_socket",
    "socket_owner_ok",
    "user_socket",
    "write_private_file",
]

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
    os.close(open_dir(directory, uid, "socket directory"))


# ---- files the daemon keeps in a directory others may share (like /tmp) ----------------------
#
# Each is opened through a checked directory fd (openat), never through a symbolic link
# (O_NOFOLLOW), and adopted only when it is a regular file of ours with one link and not open
# to others: a name another user placed there is refused, never written, truncated or read.

SOCKET_ELSEWHERE = "choose a --socket in a directory only you can write"


def open_dir(
    directory: str, uid: int, what: str = "directory", elsewhere: str = SOCKET_ELSEWHERE
) -> int:
    """An fd on `directory` once it is known safe: owned by us or root, and writable by others
    only when sticky (like /tmp), so nobody else can remove or rename what we create in it. A
    symbolic link to it is followed only when it is ours or root's (the kernel's
    protected_symlinks rule)."""
    try:
        link = os.lstat(directory)
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except NotADirectoryError:
        raise PathError(f"{what} {directory} is not a directory ({elsewhere})") from None
    except OSError as exc:
        raise PathError(f"{what} {directory}: {exc.strerror}") from None
    st = os.fstat(fd)
    problem = None
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (uid, 0):
        problem = f"is a symbolic link that belongs to uid {link.st_uid} ({elsewhere})"
    elif st.st_uid not in (uid, 0):
        problem = f"belongs to uid {st.st_uid}, not to you (someone else created it; {elsewhere})"
    elif st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        problem = f"is writable by other users (chmod go-w {directory}, or {elsewhere})"
    if problem is not None:
        os.close(fd)
        raise PathError(f"{what} {directory} {problem}")
    return fd


def open_private_file(
    path: str, uid: int, what: str, secret: bool = False, elsewhere: str = SOCKET_ELSEWHERE
) -> int:
    """A read-write fd on our file at `path`, created 0600 when absent. `secret` files (the
    metrics database) must not be readable by others either."""
    directory = open_dir(os.path.dirname(path) or ".", uid, elsewhere=elsewhere)
    try:
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        fd = _open_at(directory, path, flags, uid, what, secret, elsewhere)
    finally:
        os.close(directory)
    try:
        check_private_file(os.fstat(fd), path, uid, what, secret, elsewhere)
    except PathError:
        os.close(fd)
        raise
    return fd


def check_existing_file(
    path: str, uid: int, what: str, secret: bool = False, elsewhere: str = SOCKET_ELSEWHERE
) -> None:
    """Refuse what is at `path` unless it is a private file of ours; nothing there is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    check_private_file(st, path, uid, what, secret, elsewhere)


def write_private_file(
    path: str, uid: int, what: str, text: str, elsewhere: str = SOCKET_ELSEWHERE
) -> None:
    """Replace our file at `path` with `text` atomically: written to a new file that cannot be
    anyone else's (a random name, O_EXCL, never through a link), then renamed over `path`
    (rename replaces a name, it never follows it)."""
    directory = open_dir(os.path.dirname(path) or ".", uid, elsewhere=elsewhere)
    try:
        name = os.path.basename(path)
        existing = _lstat_at(name, directory)
        if existing is not None:
            check_private_file(existing, path, uid, what, elsewhere=elsewhere)
        temporary = f"{path}.{os.getpid()}.{os.urandom(4).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = _open_at(directory, temporary, flags, uid, what, False, elsewhere)
        scratch = os.path.basename(temporary)
        try:
            with open(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.replace(scratch, name, src_dir_fd=directory, dst_dir_fd=directory)
        except BaseException:
            os.unlink(scratch, dir_fd=directory)
            raise
    finally:
        os.close(directory)


def remove_own_file(path: str, uid: int) -> None:
    """Remove our file at `path`; a name someone else placed there stays."""
    try:
        if os.lstat(path).st_uid == uid:
            os.unlink(path)
    except FileNotFoundError:
        pass


def check_private_file(
    st: os.stat_result,
    path: str,
    uid: int,
    what: str,
    secret: bool = False,
    elsewhere: str = SOCKET_ELSEWHERE,
) -> None:
    """Refuse a file that is not a regular file of ours with one link, or that others may
    write (or, when `secret`, read)."""
    mode = stat.S_IMODE(st.st_mode)
    fix = f"remove it, or {elsewhere}"
    if stat.S_ISLNK(st.st_mode):
        problem = _LINK
    elif not stat.S_ISREG(st.st_mode):
        problem = "is not a regular file"
    elif st.st_uid != uid:
        problem = (
            f"belongs to uid {st.st_uid}, not to uid {uid} that runs the daemon"
            " (someone else may have placed it to read or change what the daemon keeps there)"
        )
    elif st.st_nlink != 1:
        problem = f"has {st.st_nlink} hard links (one may be someone else's name for it)"
    elif mode & (0o066 if secret else 0o022):
        problem = f"is {'open to' if secret else 'writable by'} other users (mode {mode:04o})"
        fix = f"chmod {'go-rw' if secret else 'go-w'} {path}, or remove it"
    else:
        return
    raise PathError(f"{what} {path} {problem}: {fix}")


_LINK = "is a symbolic link (someone else may have placed it to redirect the daemon)"


def _lstat_at(name: str, directory: int) -> os.stat_result | None:
    try:
        return os.lstat(name, dir_fd=directory)
    except FileNotFoundError:
        return None


def _open_at(
    directory: int, path: str, flags: int, uid: int, what: str, secret: bool, elsewhere: str
) -> int:
    """Open `path`'s name in `directory`; when that fails, say what someone else put there."""
    name = os.path.basename(path)
    try:
        return os.open(name, flags, 0o600, dir_fd=directory)
    except OSError as exc:
        existing = _lstat_at(name, directory)
        if existing is not None:
            check_private_file(existing, path, uid, what, secret, elsewhere)
        raise PathError(f"cannot create {what} {path}: {exc.strerror}") from None


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
