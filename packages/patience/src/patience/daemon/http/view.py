"""What the HTTP side may know of the daemon: a read-only view.

The JSON endpoints answer with exactly what the socket answers, because they ask through the
socket's own handlers (`ask` takes a protocol request and returns the decoded reply). The
few live figures `/metrics` needs beyond the replies (clients per tool, the resource ids
being tracked, the counters since start) have their own methods, each cheap enough to call
at every scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from patience.daemon.totals import Totals

__all__ = ["AskError", "DaemonView"]


class AskError(Exception):
    """The daemon answered a request with an error (its message)."""


class DaemonView(Protocol):
    """Read-only access to a running daemon, from its own event loop."""

    @property
    def started(self) -> float:
        """When the daemon started (Unix seconds)."""
        ...

    def ask(self, request: Mapping[str, object]) -> dict[str, Any]:
        """Answer `request` (a protocol 2.0 message as JSON values) as the socket would;
        raise AskError with the error reply's message."""
        ...

    def totals(self) -> Totals:
        """The counters since start, with the rate-limit usage not yet flushed included."""
        ...

    def resource_ids(self) -> Iterable[str]:
        """The ids of the resources the daemon tracks now."""
        ...

    def clients_by_tool(self) -> dict[str, int]:
        """Clients the daemon tracks now, per tool."""
        ...
