"""A SQLite database file the daemon keeps sound: made private before SQLite opens it, and
replaced by a fresh one when it is damaged under the running daemon.

The database may sit in a directory others share (beside a socket in /tmp): it, its -wal and
its -shm are made by us (paths.open_private_file) before SQLite opens them, so no name another
user placed there is adopted. A database file truncated, overwritten, replaced or removed under
the running daemon is noticed before and after every write and before every read (a few system
calls: the header and size of the file we opened, and that the path still names it) or when
SQLite calls it corrupt: it is moved aside as `<name>.corrupt-<time>`, a fresh database takes
its place, the log says so, and the work is done again in the fresh one, so what is acknowledged
is stored.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from patience.daemon import paths

__all__ = ["GuardedDatabase", "Transaction"]

_MAGIC = b"SQLite format 3\0"

log = logging.getLogger("patience.daemon")

T = TypeVar("T")


class GuardedDatabase:
    """One SQLite database at `path`, called `what` in messages (`elsewhere` is the fix
    offered when a file is not ours); `prepare` sets up its schema on every opening."""

    def __init__(
        self, path: str, what: str, elsewhere: str, prepare: Callable[[sqlite3.Connection], None]
    ) -> None:
        directory = os.path.dirname(path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self.path = path
        self.what = what
        self.elsewhere = elsewhere
        self.prepare = prepare
        self.uid = os.geteuid()
        self._fd = -1  # our own handle on the database file, to notice it being damaged
        try:
            self._open()
        except sqlite3.DatabaseError as exc:  # damaged where its schema is: start afresh
            if not _is_damage(exc):
                raise
            self._start_afresh(f"SQLite calls it damaged: {exc}")

    def _open(self) -> None:
        """Open or create the database. Its -wal and -shm are made (private) before SQLite
        opens them, so SQLite never adopts a name someone else placed first; a -journal, which
        SQLite makes and removes by itself, must be ours when there is one."""
        fd = paths.open_private_file(self.path, self.uid, self.what, True, self.elsewhere)
        db = None
        try:
            for suffix in ("-wal", "-shm"):
                os.close(
                    paths.open_private_file(
                        self.path + suffix, self.uid, self.what, True, self.elsewhere
                    )
                )
            paths.check_existing_file(
                self.path + "-journal", self.uid, self.what, True, self.elsewhere
            )
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.prepare(db)
        except BaseException:
            if db is not None:
                db.close()
            os.close(fd)
            raise
        self._db, self._fd = db, fd

    def close(self) -> None:
        if self._fd < 0:
            return
        self._db.close()
        os.close(self._fd)  # after SQLite's: closing it first would drop SQLite's locks
        self._fd = -1

    def _write(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` in one transaction in a sound file (see _sound)."""

        def transaction(db: sqlite3.Connection) -> T:
            with Transaction(db):
                return work(db)

        return self._sound(transaction)

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[Any]:
        """The rows of a query, read from a sound file (see _sound)."""
        return self._sound(lambda db: db.execute(sql, args).fetchall())

    def _sound(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run `work` on a sound file. A file found damaged before, during (SQLite calls it
        corrupt) or after it is replaced by a fresh database and the work done again there:
        its result is true of a file that is sound. Damaged twice in a row, the work is
        reported as not done."""
        for _ in range(2):
            db = self._checked()
            try:
                result = work(db)
                damage = self._damage()
            except sqlite3.DatabaseError as exc:
                if not _is_damage(exc):
                    raise
                damage = f"SQLite calls it damaged: {exc}"
            if damage is None:
                return result
            self._start_afresh(damage)
        raise sqlite3.DatabaseError(
            f"the {self.what} {self.path} was damaged again while being used"
        )

    def _checked(self) -> sqlite3.Connection:
        """The connection to a database file that is still sound (else to a fresh one)."""
        if self._fd < 0:  # an earlier fresh start failed: try again
            self._open()
        damage = self._damage()
        if damage is not None:
            self._start_afresh(damage)
        return self._db

    def _damage(self) -> str | None:
        """What happened to the database file under us, or None while it is sound as far as
        its header and size tell: the SQLite header is there, the file holds every page the
        header counts, and the path still names the file we opened."""
        try:
            named = os.lstat(self.path)
        except FileNotFoundError:
            return "it was removed"
        ours = os.fstat(self._fd)
        if (named.st_dev, named.st_ino) != (ours.st_dev, ours.st_ino):
            return "another file was put in its place"
        header = os.pread(self._fd, 100, 0)
        if len(header) < 100:
            return f"it was truncated to {ours.st_size} bytes"
        if not header.startswith(_MAGIC):
            return "it was overwritten: its SQLite header is gone"
        page_size = int.from_bytes(header[16:18])
        page_size = 65536 if page_size == 1 else page_size  # how the format writes 65536
        pages = int.from_bytes(header[28:32])
        counted = header[24:28] == header[92:96]  # the page count is valid
        if counted and ours.st_size < pages * page_size:
            return f"it was truncated to {ours.st_size} bytes (its header counts {pages} pages)"
        return None

    def _start_afresh(self, damage: str) -> None:
        """Move the damaged database aside (when the path still names a file of ours), with
        any -wal and -shm left beside it, and open a fresh one; say so loudly."""
        self.close()
        aside = _free_name(f"{self.path}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        moved = [suffix for suffix in ("", "-wal", "-shm") if self._move_own(suffix, aside)]
        log.error(
            "%s %s was damaged under the daemon (%s): %s, started a fresh one"
            " (records stored before are no longer served)",
            self.what,
            self.path,
            damage,
            f"moved it to {aside}" if "" in moved else "nothing to move aside",
        )
        self._open()

    def _move_own(self, suffix: str, aside: str) -> bool:
        """Rename our file `path + suffix` to `aside + suffix`; leave anyone else's."""
        try:
            if os.lstat(self.path + suffix).st_uid != self.uid:
                return False
        except FileNotFoundError:
            return False
        os.rename(self.path + suffix, aside + suffix)
        return True


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the work raised."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite may have rolled back by itself
            self.db.execute("ROLLBACK")


def _free_name(name: str) -> str:
    """`name`, or `name-2`, `name-3`... whichever is not taken."""
    candidate, number = name, 1
    while any(os.path.lexists(candidate + suffix) for suffix in ("", "-wal", "-shm")):
        number += 1
        candidate = f"{name}-{number}"
    return candidate


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLite calls the file corrupt or not a database."""
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
