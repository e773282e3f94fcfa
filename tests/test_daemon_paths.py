"""Where the socket lives: explicit path, environment, configuration, then per-user defaults,
with a private, unpredictable /tmp directory when there is no XDG_RUNTIME_DIR."""

from __future__ import annotations

import json
import os
import pwd
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_support import Raw, as_user, short_dir
from patience.daemon import paths

UID = os.geteuid()
ROOT = "/run/patience/daemon.sock"
OTHER = 4321  # a user who is not us
NOBODY = pwd.getpwnam("nobody")


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "TMPDIR": str(home / "tmp"), **extra}


def test_explicit_then_environment_then_configuration(tmp_path: Path) -> None:
    env = {"PATIENCE_DAEMON_SOCKET": str(tmp_path / "env.sock")}
    assert paths.resolve_socket("/x/flag.sock", "/x/conf.sock", env) == "/x/flag.sock"
    assert paths.resolve_socket(None, "/x/conf.sock", env) == str(tmp_path / "env.sock")
    assert paths.resolve_socket(None, "/x/conf.sock", {}) == "/x/conf.sock"
    assert paths.resolve_socket("rel.sock", None, {}) == os.path.abspath("rel.sock")


def test_root_uses_run() -> None:
    assert paths.resolve_socket(None, None, {"XDG_RUNTIME_DIR": "/run/user/0"}, uid=0) == (
        "/run/patience/daemon.sock"
    )


def test_a_private_runtime_dir_is_used(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    env = env_for(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    assert paths.user_socket(env, UID) == str(runtime / "patience" / "daemon.sock")


def test_a_runtime_dir_others_can_read_is_not_trusted(tmp_path: Path) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    os.chmod(runtime, 0o755)
    (tmp_path / "tmp").mkdir()
    env = env_for(tmp_path, XDG_RUNTIME_DIR=str(runtime))
    assert not paths.user_socket(env, UID).startswith(str(runtime))


def test_without_runtime_dir_a_random_private_tmp_dir_is_made_and_remembered(
    tmp_path: Path,
) -> None:
    (tmp_path / "tmp").mkdir()
    env = env_for(tmp_path)
    first = paths.user_socket(env, UID)
    directory = Path(first).parent
    assert directory.parent == tmp_path / "tmp"
    assert directory.name.startswith(f"patience-{UID}-") and len(directory.name) > 20
    st = os.lstat(directory)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == UID
    assert paths.user_socket(env, UID) == first
    record = tmp_path / ".cache" / "patience" / "runtime-dir"
    assert record.read_text().strip() == str(directory)


def test_a_recorded_dir_that_was_tampered_with_is_replaced(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    env = env_for(tmp_path)
    first = Path(paths.user_socket(env, UID)).parent
    os.chmod(first, 0o777)  # no longer private
    second = Path(paths.user_socket(env, UID)).parent
    assert second != first and stat.S_IMODE(os.stat(second).st_mode) == 0o700
    os.rmdir(second)  # gone (a reboot cleaned /tmp)
    third = Path(paths.user_socket(env, UID)).parent
    assert third.is_dir() and third != second


def test_a_symlink_in_place_of_the_recorded_dir_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    env = env_for(tmp_path)
    first = Path(paths.user_socket(env, UID)).parent
    os.rmdir(first)
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    first.symlink_to(target)
    second = Path(paths.user_socket(env, UID)).parent
    assert second != first and not second.is_symlink()


def test_concurrent_first_uses_agree_on_one_directory(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    code = (
        "import sys; from patience.daemon import paths; "
        "print(paths.user_socket(dict(HOME=sys.argv[1], TMPDIR=sys.argv[2]), 0))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path), str(tmp_path / "tmp")],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(results) == 1
    assert len(list((tmp_path / "tmp").iterdir())) == 1


def test_no_home_and_no_runtime_dir_is_a_clear_error() -> None:
    with pytest.raises(paths.PathError, match="set PATIENCE_DAEMON_SOCKET or use --socket"):
        paths.user_socket({}, UID)


def test_non_root_user_default_is_private_end_to_end() -> None:
    """As nobody, with only HOME: the socket goes into a private /tmp directory of nobody's."""
    nobody = pwd.getpwnam("nobody")
    with short_dir() as directory:
        home = directory / "home"
        (home / "tmp").mkdir(parents=True)
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        os.chown(home / "tmp", nobody.pw_uid, nobody.pw_gid)
        os.chmod(directory, 0o711)
        env = {"HOME": str(home), "TMPDIR": str(home / "tmp")}
        out = as_user(nobody.pw_uid, nobody.pw_gid, lambda: paths.resolve_socket(env=env))
        socket_dir = Path(out).parent
        st = os.lstat(socket_dir)
        assert socket_dir.parent == home / "tmp"
        assert st.st_uid == nobody.pw_uid and stat.S_IMODE(st.st_mode) == 0o700


def private_runtime(tmp_path: Path) -> Path:
    """An XDG_RUNTIME_DIR of user OTHER's (we are root, so ownership is ours to give)."""
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    os.chown(runtime, OTHER, OTHER)
    return runtime


def test_default_storage_beside_a_chosen_socket_else_in_the_state_dir(tmp_path: Path) -> None:
    env = {"HOME": "/home/u", "XDG_RUNTIME_DIR": str(private_runtime(tmp_path))}
    assert paths.default_storage("/x/d.sock", env, OTHER) == "/x/d.db"
    default = paths.user_socket(env, OTHER)
    assert paths.default_storage(default, env, OTHER) == (
        "/home/u/.local/state/patience/metrics.db"
    )
    env["XDG_STATE_HOME"] = "/state"
    assert paths.default_storage(default, env, OTHER) == "/state/patience/metrics.db"
    assert paths.default_storage(ROOT, {}, 0) == "/var/lib/patience/metrics.db"
    assert paths.default_storage("/run/p/d.sock", {}, 0) == "/run/p/d.db"
    systemd = {"STATE_DIRECTORY": "/var/lib/patience:/var/lib/other"}
    assert paths.default_storage("/run/p/d.sock", systemd, 0) == "/var/lib/patience/metrics.db"


def test_the_default_socket_is_recognised_when_named_explicitly(tmp_path: Path) -> None:
    runtime = private_runtime(tmp_path)
    env = {"HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime)}
    assert paths.is_default_socket(str(runtime / "patience" / "daemon.sock"), env, OTHER)
    assert paths.is_default_socket(f"{runtime}//patience/./daemon.sock", env, OTHER)
    assert not paths.is_default_socket(str(runtime / "other.sock"), env, OTHER)
    assert not paths.is_default_socket(str(runtime / "patience" / "daemon.sock"), env, UID + 1)
    assert paths.is_default_socket(ROOT, {}, 0) and not paths.is_default_socket("/x", {}, 0)


def test_the_default_tmp_socket_is_recognised_and_never_created_by_asking(
    tmp_path: Path,
) -> None:
    env = env_for(tmp_path)
    (tmp_path / "tmp").mkdir()
    assert not paths.is_default_socket(str(tmp_path / "tmp" / "x" / "daemon.sock"), env, OTHER)
    assert not (tmp_path / ".cache").exists() and not any((tmp_path / "tmp").iterdir())
    default = paths.user_socket(env, OTHER)
    os.chown(Path(default).parent, OTHER, OTHER)  # made by us as root, for OTHER
    assert paths.is_default_socket(default, env, OTHER)
    assert not paths.is_default_socket(str(tmp_path / "d.sock"), env, OTHER)
    assert not paths.is_default_socket(default, {}, OTHER)  # no HOME: no default to be


def serve_as_nobody(socket_path: str, env: dict[str, str], home: Path) -> int:
    """patience-daemon's own main(), as `manager.py` runs it (`--socket PATH`), in a forked
    child that has become nobody (a new interpreter could not run as nobody here: it lives in
    root's home, so everything the daemon needs is imported first). Returns the child's pid."""
    import asyncio  # noqa: F401  # what the daemon imports later, while it still can
    import resource  # noqa: F401
    import sqlite3  # noqa: F401

    import patience.config.cache
    import patience.config.layout
    import patience.daemon.lifecycle
    import patience.daemon.storage  # noqa: F401
    from patience.daemon import cli

    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(NOBODY.pw_gid)
            os.setuid(NOBODY.pw_uid)
            os.chdir(home)
            os.environ.clear()
            os.environ.update(env)
            code = cli.main(["--socket", socket_path])
        finally:
            os._exit(code)
    return pid


@pytest.mark.parametrize("default", [True, False])
def test_a_daemon_on_the_default_socket_keeps_metrics_in_the_state_dir(default: bool) -> None:
    """An auto-started daemon is told the default socket explicitly: its metrics still go to
    ~/.local/state/patience/metrics.db, not beside the socket (a tmpfs); any other socket
    keeps its own store beside it."""
    with short_dir() as directory:
        os.chmod(directory, 0o711)
        home, runtime = directory / "home", directory / "runtime"
        for place in (home, runtime):
            place.mkdir(mode=0o700)
            os.chown(place, NOBODY.pw_uid, NOBODY.pw_gid)
        env = {
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(runtime),
            "PATIENCE_SYSTEM_CONFIG_DIR": str(directory / "etc"),
        }
        chosen = runtime / "patience" / ("daemon.sock" if default else "other.sock")
        pid = serve_as_nobody(str(chosen), env, home)
        try:
            deadline = time.monotonic() + 20
            while not chosen.exists():
                assert time.monotonic() < deadline and os.waitpid(pid, os.WNOHANG) == (0, 0)
                time.sleep(0.02)
            with Raw(str(chosen)) as raw:  # our client refuses a socket of nobody's: go raw
                reply = raw.ask(json.dumps({"type": "metrics", "records": [RECORD]}))
            assert reply == {"type": "metrics_response", "accepted": 1}
        finally:
            os.kill(pid, signal.SIGTERM)
            _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        state = home / ".local" / "state" / "patience" / "metrics.db"
        beside = chosen.with_suffix(".db")
        assert state.exists() is default and beside.exists() is not default
        stored = state if default else beside
        assert stored.stat().st_uid == NOBODY.pw_uid


RECORD = {
    "tool": "repeater",
    "resource_id": "r",
    "start_time": 1.0,
    "duration": 1.0,
    "success": True,
}
