"""The one error of the daemon's decisions: a request that cannot be served as asked."""

from __future__ import annotations

__all__ = ["CoordinatorError"]


class CoordinatorError(Exception):
    """A request that cannot be served as asked; the message is the client's error reply."""
