"""What one daemon per socket needs from the system: the lock, the stale socket left by a daemon
that died, a socket born private, the pid file, enough file descriptors, the peers it serves,
and systemd's readiness notification. Every failure is a StartError naming the fix."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import stat

from patience.daemon import paths

__all__ = [
    "StartError",
    "bind",
    "clear_stale_socket",
    "group_id",
    "notify",
    "peer_allowed",
    "raise_fd_limit",
    "read_pid",
    "take_lock",
    "write_pid",
]

log = logging.getLogger("patience.daemon")


class StartError(Exception):
    """The daemon cannot start; the message says why and what to do. exit_code 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def take_lock(lock_path: str, pid_path: str, socket_path: str, uid: int) -> int:
    """The lock that makes this the one daemon of `socket_path`; its file descriptor."""
    try:
        fd = paths.open_private_file(lock_path, uid, "lock file")
    except paths.PathError as exc:
        raise StartError(str(exc)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = read_pid(pid_path)
        who = f"pid {holder}" if holder else "another process"
        raise StartError(
            f"another patience-daemon ({who}) already serves {socket_path}"
            " (stop it with: patience-daemon stop)"
        ) from None
    return fd


def clear_stale_socket(socket_path: str, lock_path: str) -> None:
    """We hold the lock, so a socket file left here belongs to a daemon that died."""
    try:
        st = os.lstat(socket_path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StartError(
            f"{socket_path} exists and is not a socket (remove it or choose another --socket)"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(socket_path)
    except OSError:
        os.unlink(socket_path)
        log.info("replaced a stale socket left at %s", socket_path)
        return
    finally:
        probe.close()
    raise StartError(
        f"{socket_path} is served by a process that does not hold {lock_path}"
        " (stop it or choose another --socket)"
    )


def bind(socket_path: str, group: int | None) -> socket.socket:
    """The listening socket: 0600, or 0660 for `group`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mode = 0o600 if group is None else 0o660
    old = os.umask(0o777 & ~mode)  # the socket is born private: no window open to others
    try:
        sock.bind(socket_path)
    except OSError as exc:
        sock.close()
        raise StartError(f"cannot create socket {socket_path}: {exc.strerror}") from None
    finally:
        os.umask(old)
    os.chmod(socket_path, mode)
    if group is not None:
        os.chown(socket_path, -1, group)
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def write_pid(path: str, uid: int) -> None:
    try:
        paths.write_private_file(path, uid, "pid file", f"{os.getpid()}\n")
    except OSError as exc:
        raise paths.PathError(f"cannot write the pid file {path}: {exc.strerror}") from None


def read_pid(path: str) -> int | None:
    """The pid in a pid file, only for a message: never read through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, encoding="ascii") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None


def raise_fd_limit(wanted: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def group_id(name: str | None, where: str) -> int | None:
    """The gid of `daemon.peer_group` (`where` names the setting's source)."""
    if name is None:
        return None
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise StartError(f"{where}: no group named {name!r}", exit_code=2) from None


def peer_allowed(uid: int, gid: int, own_uid: int, group: int | None) -> bool:
    """The daemon serves its own uid, root, and the members of its peer group."""
    if uid in (own_uid, 0):
        return True
    if group is None:
        return False
    if gid == group:
        return True
    import grp
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name in grp.getgrgid(group).gr_mem
    except KeyError:
        return False


def notify(state: str) -> None:
    """systemd's sd_notify, when NOTIFY_SOCKET is set (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{state}\nMAINPID={os.getpid()}".encode(), address)
    except OSError as exc:
        log.warning("could not notify %s: %s", address, exc)
