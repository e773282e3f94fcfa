"""Where the socket lives: explicit path, environment, configuration, then per-user defaults,
with a private, unpredictable /tmp directory when there is no XDG_RUNTIME_DIR."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_support import as_user, short_dir
from patience.daemon import paths

UID = os.geteuid()


def env_for(home: Path, **extra: str) -> dict[str, str]:
    return {"HOME": str(home), "TMPDIR": str(home / "tmp"), **extra}


def test_explicit_then_environment_then_configuration(tmp_path: Path) -> None:
    env = {"PATIENCE_DAEMON_SOCKET": str(tmp_path / "env.sock")}
    assert paths.resolve_socket("/x/flag.sock", "/x/conf.sock", env) == "/x/flag.sock"
    assert paths.resolve_socket(None, "/x/conf.sock", env) == str(tmp_path / "env.sock")
    assert paths.resolve_socket(None, "/x/conf.sock", {}) == "/x/conf.sock"
    assert paths.resolve_socket("rel.sock", None, {}) == os.path.abspath("rel.sock")
    assert paths.is_explicit(None, None, env)
    assert not paths.is_explicit(None, None, {})


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


def test_default_storage_beside_a_chosen_socket_else_in_the_state_dir() -> None:
    assert paths.default_storage("/x/d.sock", True, {}, 1000) == "/x/d.db"
    env = {"HOME": "/home/u"}
    assert paths.default_storage("/run/u/d.sock", False, env, 1000) == (
        "/home/u/.local/state/patience/metrics.db"
    )
    env = {"XDG_STATE_HOME": "/state"}
    assert paths.default_storage("/s", False, env, 1000) == "/state/patience/metrics.db"
    assert paths.default_storage("/s", False, {}, 0) == "/var/lib/patience/metrics.db"
    systemd = {"STATE_DIRECTORY": "/var/lib/patience:/var/lib/other"}
    assert (
        paths.default_storage("/run/p/d.sock", True, systemd, 0) == "/var/lib/patience/metrics.db"
    )
