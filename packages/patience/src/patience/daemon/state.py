"""What the daemon remembers across a restart: the recent grants of each limited resource,
and the limits learned from throttle signals (patience.daemon.learner).

Written when the daemon stops gracefully (SIGTERM: `systemctl restart`, an upgrade) beside its
socket, `<socket>.state`, and read back, then removed, by the next daemon before it serves,
so that the new daemon does not hand out a fresh window on top of the grants made just before.
JSON; times are Unix seconds (the monotonic clock begins again at each boot). Bounded: at most
MAX_GRANTS grants in all and MAX_BYTES bytes. Written atomically, to a fresh name and never
through a link (patience.daemon.paths.write_private_file); a file that is not a private regular
file of ours, or does not decode, is never trusted: it is set aside and the daemon starts
afresh, saying why in its log.

The in-memory backend only: with the Redis backend the state lives in Redis and outlives us.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

from patience.daemon import paths

__all__ = [
    "MAX_BYTES",
    "MAX_GRANTS",
    "MAX_LEARNED",
    "VERSION",
    "Grant",
    "SavedLearned",
    "SavedResource",
    "SavedState",
    "StateError",
    "load",
    "path_for",
    "save",
]

MAX_GRANTS = 200_000  # grants kept in one state file, all resources together
MAX_BYTES = 32 << 20  # a larger file is not read
VERSION = 1
MAX_LEARNED = 10_000  # learned limits kept (patience.daemon.learner.MAX_LEARNED)

Grant = tuple[
    Annotated[float, msgspec.Meta(ge=0, le=1 << 40)],  # Unix seconds
    Annotated[int, msgspec.Meta(ge=1, le=1 << 40)],  # tokens
    Annotated[str, msgspec.Meta(min_length=1, max_length=256)],  # client id
]


class SavedResource(msgspec.Struct, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    window: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)]
    grants: Annotated[list[Grant], msgspec.Meta(max_length=MAX_GRANTS)]


class SavedLearned(msgspec.Struct, forbid_unknown_fields=True):
    """A learned limit: its window and its control-law state (LearnedLimit.to_state)."""

    id: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    window: Annotated[float, msgspec.Meta(gt=0, le=10 * 365 * 86400)]
    state: Annotated[dict[str, float | int | None], msgspec.Meta(max_length=16)]


class SavedState(msgspec.Struct, forbid_unknown_fields=True):
    version: int
    saved_at: float
    resources: Annotated[list[SavedResource], msgspec.Meta(max_length=MAX_GRANTS)]
    learned: Annotated[list[SavedLearned], msgspec.Meta(max_length=MAX_LEARNED)] = []


class StateError(Exception):
    """The state file cannot be used; the message says why and what became of it."""


def path_for(socket_path: str) -> str:
    return socket_path + ".state"


def save(
    path: str,
    uid: int,
    resources: list[SavedResource],
    now: float,
    learned: list[SavedLearned] | None = None,
) -> tuple[int, int]:
    """Write the grants of `resources` (newest resources last are dropped first when over
    MAX_GRANTS) and the learned limits; returns (resources, grants) written. Raises OSError
    or paths.PathError."""
    kept: list[SavedResource] = []
    total = 0
    for resource in resources:
        if total + len(resource.grants) > MAX_GRANTS:
            break
        kept.append(resource)
        total += len(resource.grants)
    state = SavedState(VERSION, now, kept, (learned or [])[-MAX_LEARNED:])
    text = msgspec.json.encode(state).decode()
    paths.write_private_file(path, uid, "state file", text)
    return len(kept), total


def load(path: str, uid: int) -> SavedState:
    """The saved state, removing the file (it is used once); an empty one when there is
    none. A file that cannot be trusted raises StateError, after being set aside."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return SavedState(VERSION, 0.0, [])
    except OSError as exc:  # a symbolic link (ELOOP), or unreadable
        raise _set_aside(path, exc.strerror or str(exc)) from None
    try:
        st = os.fstat(fd)
        paths.check_private_file(st, path, uid, "state file")
        if st.st_size > MAX_BYTES:
            raise StateError(f"is larger than {MAX_BYTES} bytes")
        with open(fd, "rb", closefd=False) as f:
            data = f.read(MAX_BYTES + 1)
        saved = msgspec.json.decode(data, type=SavedState)
        if saved.version != VERSION:
            raise StateError(f"has version {saved.version}, not {VERSION}")
    except (paths.PathError, StateError, msgspec.DecodeError, OSError) as exc:
        raise _set_aside(path, str(exc)) from None
    finally:
        os.close(fd)
    paths.remove_own_file(path, uid)
    return saved


def _set_aside(path: str, problem: str) -> StateError:
    """Move an unusable state file out of the way (when we may) and say so."""
    aside = path + ".rejected"
    try:
        os.replace(path, aside)
    except OSError:
        return StateError(f"ignored the state file {path}: {problem}")
    return StateError(f"ignored the state file {path} (moved to {aside}): {problem}")
