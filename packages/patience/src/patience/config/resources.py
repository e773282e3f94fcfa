"""Configured rate limits per resource: an exact resource id or a glob pattern.

Matching is hand-written (`*` any run of characters, `?` one character) rather than fnmatch:
fnmatch pulls in `re`, and resource ids such as `network:tcp:[::1]:22` contain brackets that
fnmatch would read as character classes.
"""

from __future__ import annotations

__all__ = ["ResourceLimit", "find_limit", "find_pattern", "glob_match"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from patience.ratelimit.learned import Learning
    from patience.settings import Limit


class ResourceLimit:
    """A configured `[rate_limiting.resources]` entry: its `limit` (a settings.Limit; an entry
    that names no algorithm takes `rate_limiting.default_algorithm`, see Config.limits; None
    for an entry that only says how the limit learns), its `fallback` (share, full, closed),
    what the tools do while the daemon is away, None when the entry names none:
    `rate_limiting.fail_mode` applies; and its `learning` (ratelimit.learned.Learning: how
    the limit learns from throttle signals, and which signals count)."""

    __slots__ = ("fallback", "learning", "limit")

    def __init__(
        self, limit: Limit | None, fallback: str | None = None, learning: Learning | None = None
    ) -> None:
        from patience.ratelimit.learned import Learning

        self.limit = limit
        self.fallback = fallback
        self.learning = learning or Learning()

    def _key(self) -> tuple[Limit | None, str | None, Learning]:
        return (self.limit, self.fallback, self.learning)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ResourceLimit) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ResourceLimit({self.limit!r}, {self.fallback!r}, {self.learning!r})"


def find_limit(limits: Mapping[str, ResourceLimit], resource_id: str) -> ResourceLimit | None:
    """The limit for a resource: its exact id if configured, else the most specific matching
    pattern (see `find_pattern`)."""
    key = find_pattern(limits, resource_id)
    return None if key is None else limits[key]


def find_pattern(limits: Mapping[str, object], resource_id: str) -> str | None:
    """The configured id or pattern that decides a resource's limit: its exact id, else the
    most specific matching pattern (the one with the most literal characters; on a tie, the
    first written). The daemon names it as the limit's source."""
    if resource_id in limits:
        return resource_id
    best: tuple[int, str] | None = None
    for pattern in limits:
        if ("*" in pattern or "?" in pattern) and glob_match(pattern, resource_id):
            literal = len(pattern) - pattern.count("*") - pattern.count("?")
            if best is None or literal > best[0]:
                best = (literal, pattern)
    return None if best is None else best[1]


def glob_match(pattern: str, text: str) -> bool:
    """Wildcard match in linear time: on a mismatch, let the last `*` absorb one more char."""
    p = t = 0
    star, star_t = -1, 0
    while t < len(text):
        if p < len(pattern) and pattern[p] == "*":
            star, star_t = p, t
            p += 1
        elif p < len(pattern) and pattern[p] in ("?", text[t]):
            p += 1
            t += 1
        elif star >= 0:
            p = star + 1
            star_t += 1
            t = star_t
        else:
            return False
    return all(c == "*" for c in pattern[p:])
