"""The view of a running daemon that the HTTP side reads (view.DaemonView).

`ask` sends the request line through the socket's own request handler, as a connection of
its own that speaks for no client, and decodes the reply: the JSON endpoints therefore answer
what the socket answers, errors included. Only the read-only requests the API builds reach it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from patience.daemon.http.view import AskError
from patience.daemon.totals import Totals

__all__ = ["LiveView"]


class _Client(Protocol):
    @property
    def tool(self) -> str: ...


class Tracked(Protocol):
    """The part of the coordinator the view reads."""

    @property
    def clients(self) -> Mapping[str, _Client]: ...

    @property
    def resources(self) -> Mapping[str, object]: ...


class LiveView:
    """`handle` answers one request line (bytes) as the socket would; `totals` returns the
    counters since start, up to date."""

    def __init__(
        self,
        started: float,
        handle: Callable[[bytes], object],
        totals: Callable[[], Totals],
        tracked: Tracked,
    ) -> None:
        self._started = started
        self._handle = handle
        self._totals = totals
        self._tracked = tracked

    @property
    def started(self) -> float:
        return self._started

    def ask(self, request: Mapping[str, object]) -> dict[str, Any]:
        reply = self._handle(json.dumps(request).encode())
        assert isinstance(reply, bytes), "only requests answered at once reach the view"
        answer: dict[str, Any] = json.loads(reply)
        if answer.get("type") == "error":
            raise AskError(str(answer["error"]))
        return answer

    def totals(self) -> Totals:
        return self._totals()

    def resource_ids(self) -> Iterable[str]:
        return self._tracked.resources.keys()

    def clients_by_tool(self) -> dict[str, int]:
        return dict(Counter(client.tool or "unknown" for client in self._tracked.clients.values()))
