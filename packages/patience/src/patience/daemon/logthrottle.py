"""Log lines that clients can provoke, said at most once a minute per kind.

A client that repeats a bad request must not flood the daemon's log (or its disk): the first
line of each kind is logged, the repeats are counted and reported with the next line of that
kind once the interval has passed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["LogThrottle"]


class LogThrottle:
    """`key` names the kind of line (say, the message without its varying parts)."""

    def __init__(
        self,
        logger: logging.Logger,
        every: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = 1024,
    ) -> None:
        self.logger = logger
        self.every = every
        self.clock = clock
        self.max_kinds = max_kinds
        self._said: dict[str, tuple[float, int]] = {}  # key -> (last logged, repeats since)

    def log(self, level: int, key: str, message: str, exc_info: bool = False) -> bool:
        """Log now, or count a repeat; True when the line was written."""
        now = self.clock()
        last, repeats = self._said.get(key, (float("-inf"), 0))
        if now - last < self.every:
            self._said[key] = (last, repeats + 1)
            return False
        if len(self._said) >= self.max_kinds and key not in self._said:
            self._forget(now)
        if repeats:
            message += f" ({repeats} more like it in the last {self.every:g}s not logged)"
        self.logger.log(level, "%s", message, exc_info=exc_info)
        self._said[key] = (now, 0)
        return True

    def _forget(self, now: float) -> None:
        """Drop kinds not logged within the interval; if all are recent, drop them all."""
        recent = {k: v for k, v in self._said.items() if now - v[0] < self.every}
        self._said = recent if len(recent) < self.max_kinds else {}
