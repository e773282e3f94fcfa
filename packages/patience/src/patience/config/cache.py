"""A per-user cache of parsed configuration files.

Why: importing tomllib costs ~15 ms (it pulls in `re`, `typing` and `datetime`), PyYAML more,
and `rpr` starts `patience` once per run, so a user with a config file would pay that on
every start. An entry holds the file's exact bytes and what they parsed to, and is used only
when the bytes are identical: it cannot go stale, whatever the clocks or timestamps say.

Stored with marshal (built in, fast) in `$XDG_CACHE_HOME/patience/parsed-config` (else
`~/.cache/...`), written to a temporary file and renamed into place. Any problem reading or
writing it only means parsing again; values marshal cannot hold (a YAML date) are not cached.
"""

from __future__ import annotations

import marshal
import os
import sys

__all__ = ["MISSING", "ParseCache", "cache_file"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

_FORMAT = ("patience-parsed-config", 1, sys.hexversion)  # marshal's format follows Python
_ENTRIES = 16  # files remembered, most recently parsed last
MISSING = object()


def cache_file(environ: Mapping[str, str]) -> str:
    base = environ.get("XDG_CACHE_HOME")
    if not base or not os.path.isabs(base):  # the XDG spec: ignore a relative value
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".cache")
    return os.path.join(base, "patience", "parsed-config")


class ParseCache:
    """Read on first use, written by `save` only if something was added."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.entries: dict[str, tuple[bytes, object]] | None = None
        self.dirty = False

    def get(self, file: str, content: bytes) -> object:
        """What `content` of `file` parsed to last time, or MISSING."""
        entry = self._entries().get(file)
        return entry[1] if entry is not None and entry[0] == content else MISSING

    def put(self, file: str, content: bytes, data: object) -> None:
        try:
            marshal.dumps(data)  # type: ignore[arg-type]  # finding out is the point
        except ValueError:  # a type marshal cannot hold: parse this file every time
            return
        entries = self._entries()
        entries.pop(file, None)
        entries[file] = (content, data)
        while len(entries) > _ENTRIES:
            del entries[next(iter(entries))]
        self.dirty = True

    def save(self) -> None:
        if not self.dirty or self.entries is None:
            return
        temporary = f"{self.path}.{os.getpid()}"
        try:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            with open(temporary, "wb") as f:
                marshal.dump((_FORMAT, self.entries), f)
            os.replace(temporary, self.path)
        except OSError:
            try:
                os.unlink(temporary)
            except OSError:
                pass
        self.dirty = False

    def _entries(self) -> dict[str, tuple[bytes, object]]:
        if self.entries is None:
            self.entries = {}
            try:
                with open(self.path, "rb") as f:
                    stored = marshal.load(f)
            except (OSError, EOFError, ValueError, TypeError):
                return self.entries
            if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == _FORMAT:
                self.entries = stored[1]
        return self.entries
