"""The files the daemon makes beside a socket in a directory other users share (a sticky /tmp):
another user's symbolic links and files there are never followed, written, read or adopted,
and a metrics database damaged under the running daemon is moved aside, not written into.

The daemon runs as root (as the tests do); the other user is `nobody`, acting in forked
children (daemon_support.as_user), in a fresh sticky 1777 directory of the test's own."""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import sqlite3
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_support import Daemon, Raw, as_user, run_daemon, running, short_dir
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.storage import MetricsStore

NOBODY = pwd.getpwnam("nobody")
SECRET = "root's own data\n"


class Shared:
    """A test directory (traversable by others) holding a sticky world-writable `shared`
    directory, where the daemon's socket goes, and root's private `victim` file outside it."""

    def __init__(self, directory: Path) -> None:
        os.chmod(directory, 0o711)
        self.shared = directory / "shared"
        self.shared.mkdir()
        os.chmod(self.shared, 0o1777)
        self.victim = directory / "victim"
        self.victim.write_text(SECRET)
        os.chmod(self.victim, 0o600)
        self.missing = directory / "made-by-the-daemon"  # must never come into being
        self.daemon = Daemon(directory, f'[daemon]\nstorage_path = "{self.shared / "x.db"}"\n')
        self.daemon.socket = str(self.shared / "x.sock")

    def plant(self, kind: str, *names: str) -> None:
        """As nobody: a symbolic link to the victim ("link"), to a path that does not exist
        ("dangling"), or an empty file anyone may read and write ("file"), at each name."""
        shared, victim, missing = self.shared, str(self.victim), str(self.missing)

        def action() -> str:
            os.umask(0)
            for name in names:
                if kind == "file":
                    os.close(os.open(shared / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666))
                else:
                    os.symlink(victim if kind == "link" else missing, shared / name)
            return "planted"

        assert as_user(NOBODY.pw_uid, NOBODY.pw_gid, action) == "planted"

    def outcome(self) -> tuple[int | None, str]:
        """Start the daemon: (its exit code and what it said) when it refuses to start, or
        (None, its log) when it came up and served, stopped again then."""
        daemon = self.daemon
        daemon.start(wait=False)
        assert daemon.proc is not None
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if daemon.proc.poll() is not None:
                return daemon.proc.returncode, daemon.log_text()
            if answers(daemon.socket):
                daemon.stop()
                return None, daemon.log_text()
            time.sleep(0.02)
        daemon.ensure_stopped()
        raise AssertionError(f"the daemon neither served nor exited:\n{daemon.log_text()}")

    def assert_untouched(self) -> None:
        st = os.stat(self.victim)
        assert self.victim.read_text() == SECRET
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o600)
        assert not os.path.lexists(self.missing)


def answers(path: str) -> bool:
    """Whether a daemon serves `path` (one that is refusing to start may close on us)."""
    try:
        with Raw(path, timeout=2.0) as raw:
            raw.send('{"type":"ping"}\n')
            return b'"pong"' in raw.line()
    except OSError:
        return False


@contextlib.contextmanager
def shared_dir() -> Iterator[Shared]:
    with short_dir() as directory:
        place = Shared(directory)
        try:
            yield place
        finally:
            place.daemon.ensure_stopped()


DAEMON_FILES = ["x.sock.lock", "x.db", "x.db-wal", "x.db-shm"]


@pytest.mark.parametrize("kind", ["link", "dangling"])
@pytest.mark.parametrize("name", DAEMON_FILES)
def test_a_symlink_another_user_placed_is_never_followed(name: str, kind: str) -> None:
    """Before: the lock and the database were opened through the link (a dangling one made a
    root-owned file where it pointed); SQLite refused its -wal and -shm only vaguely."""
    with shared_dir() as place:
        place.plant(kind, name)
        code, said = place.outcome()
        place.assert_untouched()
        assert code == 1, said
        path = place.shared / name
        assert f"{path} is a symbolic link (someone else may have placed it" in said
        assert ": remove it, or " in said
        assert os.readlink(path)  # left as it was: not ours to remove


def test_the_pid_files_temporary_name_cannot_be_planted() -> None:
    """The pid file is written to a temporary name and renamed. Before, that name was
    `x.sock.pid.<pid>`: links planted at every likely pid had the daemon truncate root's
    file and write its pid into it."""
    with shared_dir() as place:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text())
        last = int(Path("/proc/sys/kernel/ns_last_pid").read_text())
        likely = [(last + i) % pid_max for i in range(1, 4000)]
        place.plant("link", *(f"x.sock.pid.{pid}" for pid in likely if pid > 300))
        code, said = place.outcome()
        assert code is None, said
        assert place.daemon.proc is not None and place.daemon.proc.pid in likely  # a real test
        place.assert_untouched()


@pytest.mark.parametrize("name", ["x.sock.lock", "x.sock.pid", *DAEMON_FILES[1:], "x.db-journal"])
def test_a_file_another_user_owns_is_refused(name: str) -> None:
    """Before: the lock was shared with its owner, the pid file replaced without a word, and
    SQLite adopted an empty database, -wal or -shm that its owner could read (the stored
    command lines) and write."""
    with shared_dir() as place:
        place.plant("file", name)
        code, said = place.outcome()
        path = place.shared / name
        assert code == 1, said
        assert (
            f"{path} belongs to uid {NOBODY.pw_uid}, not to uid 0 that runs the daemon"
            " (someone else may have placed it to read or change what the daemon keeps there):"
            " remove it, or "
        ) in said
        assert path.read_bytes() == b""  # nothing was written into it
        assert not os.path.exists(place.daemon.socket)


def test_a_database_other_users_can_read_is_refused() -> None:
    with shared_dir() as place:
        db = place.shared / "x.db"
        sqlite3.connect(db).close()  # root's own, but 0644: everyone may read the commands
        code, said = place.outcome()
        assert code == 1, said
        assert f"metrics database {db} is open to other users (mode 0644):" in said
        assert f"chmod go-rw {db}, or remove it" in said


@pytest.mark.parametrize("mode, owner", [(0o777, 0), (0o1777, NOBODY.pw_uid)])
def test_a_database_directory_others_control_is_refused(mode: int, owner: int) -> None:
    """A world-writable directory without the sticky bit lets anyone swap the database's
    files; a sticky one that belongs to someone else lets its owner do so. (The socket's
    directory had these rules already: test_daemon_security.)"""
    with short_dir() as directory:
        os.chmod(directory, 0o711)
        store = directory / "store"
        store.mkdir()
        os.chmod(store, mode)
        os.chown(store, owner, -1)
        daemon = Daemon(directory, f'[daemon]\nstorage_path = "{store / "m.db"}"\n')
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 1, result.stderr
        if owner == 0:
            expected = f"directory {store} is writable by other users (chmod go-w {store}, or"
        else:
            expected = f"directory {store} belongs to uid {owner}, not to you"
        assert expected in result.stderr
        assert "storage_path" in result.stderr
        assert not (store / "m.db").exists()


def record(resource: str) -> dict[str, object]:
    return {
        "tool": "repeater",
        "resource_id": resource,
        "start_time": time.time(),
        "duration": 0.5,
        "success": True,
        "command": ["curl", "-H", "Authorization: secret"],
        "record_id": uuid.uuid4().hex,
    }


def truncate(path: Path) -> None:
    os.truncate(path, 0)


def overwrite(path: Path) -> None:
    with open(path, "r+b") as f:
        f.write(os.urandom(os.path.getsize(path)))


@pytest.mark.parametrize("damage", [truncate, overwrite], ids=["truncated", "garbage"])
def test_a_database_damaged_under_the_daemon_is_moved_aside(damage: object) -> None:
    """Before: the next batch was acknowledged into the broken file (and lost with it)."""
    assert callable(damage)
    with running() as daemon, daemon.client() as client:
        assert client.send_metrics([record("before")]) == 1
        damage(daemon.db)
        late = record("after")
        assert client.send_metrics([late]) == 1  # acknowledged: stored in a fresh database
        said = daemon.log_text()
        assert f"ERROR: metrics database {daemon.db} was damaged under the daemon (it was" in said
        assert f"moved it to {daemon.db}.corrupt-" in said
        assert "started a fresh one" in said
        summary = client.query("resource_summary")
        assert [row["resource_id"] for row in summary] == ["after"]
        assert daemon.stop(signal.SIGTERM) == 0
        aside = list(daemon.dir.glob("metrics.db.corrupt-*"))
        assert len(aside) == 1 and aside[0].name.startswith("metrics.db.corrupt-2"), aside
        assert stat.S_IMODE(os.stat(aside[0]).st_mode) == 0o600
        with contextlib.closing(sqlite3.connect(daemon.db)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            stored = db.execute("SELECT record_id FROM executions").fetchall()
        assert stored == [(late["record_id"],)]


def test_a_database_removed_under_the_daemon_is_made_again() -> None:
    with running() as daemon, daemon.client() as client:
        assert client.send_metrics([record("before")]) == 1
        os.unlink(daemon.db)
        assert client.send_metrics([record("after")]) == 1
        assert "was damaged under the daemon (it was removed): nothing to move aside" in (
            daemon.log_text()
        )
        assert [row["resource_id"] for row in client.query("resource_summary")] == ["after"]
        assert stat.S_IMODE(os.stat(daemon.db).st_mode) == 0o600


def test_pages_sqlite_finds_corrupt_are_moved_aside_too(tmp_path: Path) -> None:
    """Damage the header does not show (garbage after the first page): SQLite's own error
    moves the file aside, the batch goes to a fresh database."""
    path = tmp_path / "m.db"
    store = MetricsStore(str(path), retention=1e12, retention_count=100_000)
    batch = [execution(f"id{i}", ["x" * 200]) for i in range(2000)]
    assert store.add(batch, "c") == 2000
    store.close()
    with open(path, "r+b") as f:
        f.seek(4096)
        f.write(os.urandom(os.path.getsize(path) - 4096))
    store = MetricsStore(str(path), retention=1e12, retention_count=100_000)
    late = execution("late", [])
    assert store.unseen([late]) == [late]
    assert store.add([late], "c") == 1
    assert store.count() == 1
    assert len(list(tmp_path.glob("m.db.corrupt-*"))) == 1


def execution(record_id: str, command: list[str]) -> ExecutionMetrics:
    return ExecutionMetrics(
        tool="patience", resource_id="r", start_time=5.0, duration=1.0, success=True,
        command=command, record_id=record_id,
    )  # fmt: skip
