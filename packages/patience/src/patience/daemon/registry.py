"""The clients the daemon knows: who they are, what they used, and when they may be forgotten.

A client is a client id, which several connections may share. It is kept while it has a
connection or a waiting request, and for `client_ttl` after (its declared limits and
statistics with it). The ids one peer uid may hold, and all of them together, are capped: a new
id pushes out the least recently seen idle client, and with none idle it is refused.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable

from patience.daemon.errors import CoordinatorError
from patience.daemon.protocol import ScheduleConfig

__all__ = ["MAX_CLIENTS", "MAX_CLIENTS_PER_OWNER", "Client", "Registry", "Use"]

MAX_CLIENTS = 100_000
MAX_CLIENTS_PER_OWNER = 10_000  # client ids tracked for one peer uid


class Use:
    """What one client did with one resource (protocol 2.0's ClientState)."""

    __slots__ = ("executions", "last_execution", "schedule", "schedule_ends", "tokens")

    def __init__(self) -> None:
        self.tokens = 0
        self.executions = 0
        self.last_execution: float | None = None  # Unix seconds, from the records
        self.schedule: ScheduleConfig | None = None
        self.schedule_ends = math.inf


class Client:
    """`owner` is the uid of the peer that first spoke for it; `last_seen`, once it has no
    connections and no waiters, is when it went idle."""

    __slots__ = ("booking", "connections", "id", "last_seen", "owner", "tool", "uses", "waiting")

    def __init__(self, client_id: str, tool: str, now: float, owner: int = 0) -> None:
        self.id = client_id
        self.tool = tool
        self.owner = owner
        self.connections = 0
        self.waiting = 0  # its waiters in the queues
        self.last_seen = now
        self.uses: dict[str, Use] = {}
        # Protocol 1.0: the resource and attempt count of its last plan, which its register
        # (if it comes) confirms rather than adds.
        self.booking: tuple[str, int] | None = None

    def use(self, resource_id: str) -> Use:
        """Its use of a resource, from the first."""
        use = self.uses.get(resource_id)
        if use is None:
            use = self.uses[resource_id] = Use()
        return use


class Registry:
    """`forgotten(client, now)` is called for each client forgotten (to drop its declared
    limits)."""

    def __init__(self, client_ttl: float, forgotten: Callable[[Client, float], None]) -> None:
        self.client_ttl = client_ttl
        self.clients: dict[str, Client] = {}
        self._forgotten = forgotten
        # Clients with no connection and no waiter, by owner, least recently seen first.
        self._idle: dict[int, OrderedDict[str, Client]] = {}
        self._owned: dict[int, int] = {}  # clients tracked per owner

    def connect(self, client_id: str, tool: str, now: float, owner: int = 0) -> Client:
        """A connection of peer uid `owner` speaks for `client_id`; several connections may
        share one id. A new id may push out the least recently seen idle client."""
        client = self.clients.get(client_id)
        if client is None:
            self._make_room(owner, now)
            client = self.clients[client_id] = Client(client_id, tool, now, owner)
            self._owned[owner] = self._owned.get(owner, 0) + 1
        else:
            idle = self._idle.get(client.owner)
            if idle is not None:
                idle.pop(client_id, None)
            if tool:
                client.tool = tool
        client.connections += 1
        client.last_seen = now
        return client

    def disconnect(self, client: Client, now: float) -> None:
        client.connections -= 1
        client.last_seen = now
        self._check_idle(client)

    def start_waiting(self, client: Client) -> None:
        client.waiting += 1

    def done_waiting(self, client: Client, now: float) -> None:
        client.waiting -= 1
        client.last_seen = now
        self._check_idle(client)

    def expire(self, now: float, budget: int) -> int:
        """Forget clients idle for longer than client_ttl, at a cost of one step each and one
        per resource it used, within `budget` steps; returns the steps left. Idle clients are
        kept in the order they went idle, so those due are found at once."""
        for idle in list(self._idle.values()):
            while idle and budget > 0:
                client = next(iter(idle.values()))
                if now - client.last_seen <= self.client_ttl:
                    break
                self._forget(client, now)
                budget -= 1 + len(client.uses)
        return budget

    def _check_idle(self, client: Client) -> None:
        """Track a client that has just lost its last connection or waiter as idle."""
        if not client.connections and not client.waiting and self.clients.get(client.id) is client:
            self._idle.setdefault(client.owner, OrderedDict())[client.id] = client

    def _make_room(self, owner: int, now: float) -> None:
        """Forget the least recently seen idle client of `owner` when it has as many as it may,
        and of anyone when the daemon tracks as many as it may; refuse when none is idle."""
        if self._owned.get(owner, 0) >= MAX_CLIENTS_PER_OWNER and not self._evict(
            self._idle.get(owner), now
        ):
            raise CoordinatorError(
                f"too many clients ({MAX_CLIENTS_PER_OWNER}) of uid {owner} are connected or"
                " waiting; close some connections or retry later"
            )
        if len(self.clients) >= MAX_CLIENTS:
            oldest = min(
                (idle for idle in self._idle.values() if idle),
                key=lambda idle: next(iter(idle.values())).last_seen,
                default=None,
            )
            if not self._evict(oldest, now):
                raise CoordinatorError(
                    f"too many clients ({MAX_CLIENTS}) are connected or waiting; retry later"
                )

    def _evict(self, idle: OrderedDict[str, Client] | None, now: float) -> bool:
        if not idle:
            return False
        self._forget(next(iter(idle.values())), now)
        return True

    def _forget(self, client: Client, now: float) -> None:
        del self.clients[client.id]
        del self._idle[client.owner][client.id]
        self._owned[client.owner] -= 1
        self._forgotten(client, now)
