"""Only the daemon's own user (and root, and an optional configured group) is served: the
socket is private, peers are checked with SO_PEERCRED, clients refuse a socket another user
owns, and the daemon refuses directories other users control. Tests run as root and act as
`nobody` in forked children."""

from __future__ import annotations

import grp
import json
import os
import pwd
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon_support import Daemon, as_user, run_daemon, running, short_dir
from patience.daemon.client import DaemonClient, DaemonUnavailable

NOBODY = pwd.getpwnam("nobody")
NOGROUP = grp.getgrgid(NOBODY.pw_gid)


def as_nobody(action: Callable[[], str]) -> str:
    return as_user(NOBODY.pw_uid, NOBODY.pw_gid, action)


def talk(path: str) -> Callable[[], str]:
    def action() -> str:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(10)
            sock.connect(path)
            sock.sendall(b'{"type":"ping"}\n')
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
                if data.endswith(b"\n"):
                    break
            return data.decode()

    return action


def test_another_user_cannot_even_reach_the_socket() -> None:
    with running() as daemon:
        assert as_nobody(talk(daemon.socket)).startswith("PermissionError")


def test_another_uid_is_refused_by_peer_credentials() -> None:
    with running() as daemon:
        # Open the file permissions, as a careless admin might: the uid check still holds.
        os.chmod(daemon.dir, 0o711)
        os.chmod(Path(daemon.socket).parent, 0o755)
        os.chmod(daemon.socket, 0o666)
        reply = json.loads(as_nobody(talk(daemon.socket)))
        assert reply == {
            "type": "error",
            "error": f"permission denied: uid {NOBODY.pw_uid} may not use this daemon",
        }
        assert f"refused a connection from uid {NOBODY.pw_uid}" in daemon.log_text()
        with daemon.client() as client:  # root is still served
            client.ping()


def test_a_configured_group_is_served() -> None:
    with running(f'[daemon]\npeer_group = "{NOGROUP.gr_name}"\n') as daemon:
        os.chmod(daemon.dir, 0o711)  # the test's own directory, around the daemon's
        directory = Path(daemon.socket).parent
        assert oct(os.stat(directory).st_mode & 0o777) == "0o750"
        assert os.stat(directory).st_gid == NOGROUP.gr_gid
        assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o660"
        assert json.loads(as_nobody(talk(daemon.socket)))["type"] == "pong"


def test_an_unknown_group_is_a_configuration_error() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory, '[daemon]\npeer_group = "no-such-group-here"\n')
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 2
        assert result.stderr == (
            f"patience-daemon: {daemon.config}: daemon.peer_group:"
            " no group named 'no-such-group-here'\n"
        )


def test_the_client_refuses_a_socket_owned_by_another_user() -> None:
    with short_dir() as directory:
        path = str(directory / "fake.sock")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as fake:
            fake.bind(path)
            fake.listen()
            os.chown(path, NOBODY.pw_uid, NOBODY.pw_gid)
            with pytest.raises(DaemonUnavailable, match="belongs to another user"):
                DaemonClient(path, "repeater").ping()


def test_the_daemon_refuses_a_directory_another_user_owns() -> None:
    with short_dir() as directory:
        squatted = directory / "squat"
        squatted.mkdir(mode=0o777)
        os.chown(squatted, NOBODY.pw_uid, NOBODY.pw_gid)
        daemon = Daemon(directory)
        daemon.socket = str(squatted / "d.sock")
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 1
        assert f"belongs to uid {NOBODY.pw_uid}, not to you" in result.stderr
        assert not os.path.exists(daemon.socket)


def test_the_daemon_refuses_a_directory_others_can_write() -> None:
    with short_dir() as directory:
        shared = directory / "shared"
        shared.mkdir()
        os.chmod(shared, 0o777)
        daemon = Daemon(directory)
        daemon.socket = str(shared / "d.sock")
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 1
        assert "is writable by other users" in result.stderr


def test_a_sticky_shared_directory_like_tmp_is_accepted() -> None:
    with short_dir() as directory:
        sticky = directory / "sticky"
        sticky.mkdir()
        os.chmod(sticky, 0o1777)
        daemon = Daemon(directory)
        daemon.socket = str(sticky / "d.sock")
        try:
            daemon.start()
            assert oct(os.stat(daemon.socket).st_mode & 0o777) == "0o600"
        finally:
            daemon.ensure_stopped()


def test_a_socket_path_that_is_too_long_is_refused_clearly() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory)
        daemon.socket = str(directory / ("x" * 120) / "d.sock")
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 1
        assert "the limit is 107 (choose a shorter --socket)" in result.stderr
