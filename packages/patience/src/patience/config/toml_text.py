"""Writing TOML text: the standard library reads TOML but does not write it, and we only
ever write scalars, inline tables of scalars and keys."""

from __future__ import annotations

__all__ = ["key", "string", "value"]

_BARE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}


def value(v: object) -> str:
    """A bool, number, string or dict of those as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    return string(str(v))


def string(s: str) -> str:
    """Plain "..." when nothing needs escaping; a literal '...' (no escapes: kind to regular
    expressions) when only backslashes or double quotes would; else an escaped "..."."""
    printable = all(c >= " " and c != "\x7f" for c in s)
    if printable and '"' not in s and "\\" not in s:
        return f'"{s}"'
    if printable and "'" not in s:
        return f"'{s}'"
    return '"' + "".join(_ESCAPES.get(c) or _control(c) for c in s) + '"'


def _control(c: str) -> str:
    return f"\\u{ord(c):04x}" if c < " " or c == "\x7f" else c


def key(k: str) -> str:
    """A key, quoted unless it is bare (letters, digits, _ and -)."""
    return k if k and all(c in _BARE for c in k) else string(k)
