"""The daemon's decisions, as pure code: the clock is a parameter, nothing here does I/O.

Per resource: the limit in force (configured by exact id, else the most specific glob, as
patience.config.resources.find_pattern decides; else the strictest one its clients declared,
else none), a limiter from patience.ratelimit, and a queue of waiting
requests. Waiting requests are served first come, first served within a client and round-robin
across clients. A request that would wait longer than it allows is refused at once with the
time to retry. A waiter that goes away loses its place.

Fair shares. Round-robin alone would reward speed: when tokens free up, a client that comes
back quickly from its last grant finds the queue empty and takes them all. So each resource
counts the tokens each client holds in the current window; a client that already holds its
equal share (limit / clients competing) while others compete waits a short grace period
before it may take more, and the others, served first in that time, catch up. Grants thus
converge to max-min fair shares (a client asking for less than its share gets all it asks,
the others split the rest), and no capacity is held back longer than the grace.

Times are seconds on the server's monotonic clock, except protocol 1.0 bookkeeping, which is in
the Unix seconds the Go client sends. The server calls `poll(now)` at `next_wakeup()` to hand
tokens to waiters and to time out waits.

Remote admission (the Redis backend, daemons on many hosts sharing one limit). While `remote`
is set, every request with a limit joins the queue, and the admissions themselves are decided
elsewhere: `take(now)` hands out the next waiter of each resource whose turn has come (one at
a time per resource, so queue order and fair shares hold as above), and `settle` applies the
decision that comes back. The local limiter keeps counting this daemon's own grants: they
bound what Redis can allow (a request that cannot fit here is refused or queued without asking),
and when Redis is unreachable the server clears `remote` and the local limits carry on from them.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence

from patience.config.resources import ResourceLimit, find_pattern
from patience.daemon.bookings import Answer, Bookings, decide
from patience.daemon.protocol import (
    MAX_V1_ENTRIES_PER_RESOURCE,
    Acquire,
    AcquireResponse,
    ClientState,
    ExecutionMetrics,
    RateLimitState,
    RegisteredRequest,
    RegisterSchedule,
    ReportGrants,
    ScheduleConfig,
    ScheduleRequest,
    SharedResource,
)
from patience.ratelimit.algorithms import (
    DEFAULT_ALGORITHM,
    Decision,
    Limiter,
    RateLimitError,
    make_limiter,
)
from patience.ratelimit.resources import validate_resource_id

MAX_RESOURCES = 100_000
MAX_CLIENTS = 100_000
MAX_CLIENTS_PER_OWNER = 10_000  # client ids tracked for one peer uid
SWEEP = 5_000  # clients and resources looked at per clean-up pass
MAX_BOOKED = 1_000_000  # protocol 1.0 booked attempts kept, all resources together
_HISTORY = 65_536  # recent grants kept per resource: fair-share counts, replay into a new limiter
GRACE = 0.02  # seconds a client over its fair share waits for others (at most one token's time)
SHARES_EVERY = 0.1  # seconds a resource's shares are reused before they are worked out again
ASK_GRACE = 0.5  # remote: seconds past its wait a request may wait to be asked once


class CoordinatorError(Exception):
    """A request that cannot be served as asked; the message is the client's error reply."""


class LimitSpec:
    """The limit in force on a resource and where it comes from."""

    __slots__ = ("algorithm", "limit", "source", "window")

    def __init__(self, limit: int, window: float, algorithm: str, source: str) -> None:
        self.limit = limit
        self.window = window
        self.algorithm = algorithm
        self.source = source

    def same_as(self, other: LimitSpec | None) -> bool:
        return other is not None and (self.limit, self.window, self.algorithm) == (
            other.limit,
            other.window,
            other.algorithm,
        )


class Waiter:
    """One acquire request waiting in a resource's queue."""

    __slots__ = ("client", "deadline", "eligible_at", "enqueued", "live", "resource", "tokens")

    def __init__(
        self, client: Client, resource: Resource, tokens: int, now: float, deadline: float
    ) -> None:
        self.client = client
        self.resource = resource
        self.tokens = tokens
        self.enqueued = now
        self.deadline = deadline
        self.eligible_at = min(deadline, now + resource.grace)  # may exceed its share from then
        self.live = True


class Use:
    """What one client did with one resource (the seed's ClientState)."""

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


class Resource:
    __slots__ = (
        "asked",
        "bookings",
        "configured",
        "declared",
        "executions",
        "grace",
        "held",
        "history",
        "id",
        "last_activity",
        "limiter",
        "pending",
        "queue",
        "ready_at",
        "shares",
        "shares_at",
        "spec",
        "tokens",
    )

    def __init__(self, resource_id: str, configured: LimitSpec | None, now: float) -> None:
        self.id = resource_id
        self.configured = configured
        self.declared: dict[str, LimitSpec] = {}
        self.spec: LimitSpec | None = None
        self.limiter: Limiter | None = None
        self.history: deque[tuple[float, int, str]] = deque()  # (time, tokens, client id)
        self.held: dict[str, int] = {}  # tokens each client holds in the current window
        self.asked: dict[str, float] = {}  # when each client last asked (for the shares)
        self.shares: dict[str, int] = {}  # each client's share, worked out at shares_at
        self.shares_at = -math.inf
        self.grace = 0.0
        # Waiting requests: client id -> its waiters, in round-robin order.
        self.queue: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self.ready_at = math.inf  # when the head of the queue may be served
        self.pending: Waiter | None = None  # remote: the waiter whose admission is being decided
        self.bookings = Bookings()  # protocol 1.0: the Go clients' booked attempts
        self.tokens = 0
        self.executions = 0
        self.last_activity = now


class Coordinator:
    def __init__(
        self, limits: Mapping[str, ResourceLimit], default_algorithm: str, client_ttl: float
    ) -> None:
        self.limits = dict(limits)  # by configured id or pattern
        self.default_algorithm = default_algorithm
        self.client_ttl = client_ttl
        self.clients: dict[str, Client] = {}
        self.resources: dict[str, Resource] = {}
        self._waiting: set[Resource] = set()
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._sequence = 0
        self.usage: dict[tuple[str, str], list[float]] = {}  # (resource, tool) -> counters
        self.remote = False  # admissions are decided elsewhere: see take and settle
        self._booked_total = 0  # protocol 1.0 bookings held, all resources together
        # Clients with no connection and no waiter, by owner, least recently seen first.
        self._idle: dict[int, OrderedDict[str, Client]] = {}
        self._owned: dict[int, int] = {}  # clients tracked per owner
        self._sweep: _Sweep | None = None  # the clean-up round in progress

    # ---- configuration ------------------------------------------------------------------------

    def reload(
        self, limits: Mapping[str, ResourceLimit], default_algorithm: str, now: float
    ) -> None:
        """New configured limits; every resource's limit in force is re-evaluated."""
        self.limits = dict(limits)
        self.default_algorithm = default_algorithm
        for resource in self.resources.values():
            resource.configured = self._configured(resource.id)
            self._apply_spec(resource, now)

    def _configured(self, resource_id: str) -> LimitSpec | None:
        pattern = find_pattern(self.limits, resource_id)
        if pattern is None:
            return None
        chosen = self.limits[pattern]
        algorithm = chosen.algorithm or self.default_algorithm
        return LimitSpec(chosen.limit, chosen.window, algorithm, f"config:{pattern}")

    def _apply_spec(self, resource: Resource, now: float) -> None:
        spec = resource.configured or _strictest(resource.declared)
        if spec is None:
            resource.spec = resource.limiter = None
        elif not spec.same_as(resource.spec):  # recent grants count against the new limit
            resource.spec, resource.limiter = spec, _replay(spec, resource.history)
            resource.grace = min(GRACE, spec.window / spec.limit)
        else:
            resource.spec = spec  # same numbers, maybe another source
        self._requeue(resource, now)

    # ---- clients ----------------------------------------------------------------------------

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

    def _done_waiting(self, client: Client, now: float) -> None:
        client.waiting -= 1
        client.last_seen = now
        self._check_idle(client)

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
        """An idle client goes, and its declared limits with it."""
        del self.clients[client.id]
        del self._idle[client.owner][client.id]
        self._owned[client.owner] -= 1
        for resource_id in client.uses:
            resource = self.resources.get(resource_id)
            if resource is not None and resource.declared.pop(client.id, None) is not None:
                self._apply_spec(resource, now)

    # ---- protocol 2.0: tokens -------------------------------------------------------------------

    def acquire(self, client: Client, request: Acquire, now: float) -> AcquireResponse | Waiter:
        """A decision now, or a Waiter that `poll` resolves later."""
        client.last_seen = now
        resource = self._resource(request.resource_id, now)
        if request.limit is not None or request.window is not None:
            self._declare(client, resource, request, now)
        if resource.id not in client.uses:
            client.uses[resource.id] = Use()
        resource.last_activity = now
        limiter = resource.limiter
        tokens = request.tokens
        if limiter is None:
            self._grant(client, resource, tokens, now)
            return AcquireResponse(granted=True, tokens=tokens, retry_after=0.0, reset_after=0.0)
        resource.asked[client.id] = now
        self._trim(resource, now, limiter.window)
        if tokens > limiter.limit:
            raise CoordinatorError(
                f"tokens: {tokens} at once can never fit the limit of {resource.id},"
                f" {limiter.describe()} (ask for at most {limiter.limit})"
            )
        first = not (resource.queue or self.remote)
        if first and (request.max_wait == 0 or self._within_share(resource, client.id, tokens)):
            decision = limiter.acquire(now, tokens)
            if decision.granted:
                self._grant(client, resource, tokens, now)
                return AcquireResponse(
                    granted=True,
                    tokens=tokens,
                    retry_after=0.0,
                    reset_after=decision.reset_after,
                    remaining=decision.remaining,
                    limit=limiter.limit,
                    window=limiter.window,
                    algorithm=limiter.algorithm,
                    limit_source=resource.spec.source if resource.spec else None,
                    share=self.share(resource, client.id, now),
                )
            retry_after = decision.retry_after
        elif first:  # over its share while others compete: let them go first
            retry_after = max(limiter.available_at(now, tokens) - now, resource.grace)
        else:  # others wait first, or remote: at best after the head, and when ours fit here
            ready_at = resource.ready_at if resource.queue else now
            retry_after = max(limiter.available_at(now, tokens), ready_at) - now
        if retry_after > request.max_wait:
            self._count(resource, client, denied=1)
            refusal = self._refusal(resource, tokens, retry_after, 0.0, now)
            refusal.share = self.share(resource, client.id, now)
            return refusal
        waiter = Waiter(client, resource, tokens, now, now + request.max_wait)
        queue = resource.queue.get(client.id)
        if queue is None:
            queue = resource.queue[client.id] = deque()
        queue.append(waiter)
        client.waiting += 1
        if len(resource.queue) == 1 and len(queue) == 1:
            resource.ready_at = now + retry_after
        else:  # the newcomer may be within its share where those ahead are not
            resource.ready_at = min(resource.ready_at, now)
        self._waiting.add(resource)
        self._sequence += 1
        # Remote: each ask checks the wait (settle), and asks go one at a time, so a request
        # is given ASK_GRACE to be asked at all before its deadline refuses it unasked.
        cutoff = waiter.deadline + ASK_GRACE if self.remote else waiter.deadline
        heapq.heappush(self._deadlines, (cutoff, self._sequence, waiter))
        return waiter

    def cancel(self, waiter: Waiter, now: float) -> None:
        """The waiter's client went away: it leaves the queue and holds nothing."""
        if not waiter.live:
            return
        waiter.live = False
        self._done_waiting(waiter.client, now)
        resource = waiter.resource
        queue = resource.queue[waiter.client.id]
        was_head = next(iter(resource.queue)) == waiter.client.id and queue[0] is waiter
        queue.remove(waiter)
        if not queue:
            del resource.queue[waiter.client.id]
        if was_head:
            resource.ready_at = now  # the next waiter may fit where this one did not

    def next_wakeup(self) -> float:
        """When `poll` has something to do next (inf when nothing waits)."""
        deadlines = self._deadlines
        while deadlines and not deadlines[0][2].live:
            heapq.heappop(deadlines)
        first = deadlines[0][0] if deadlines else math.inf
        for resource in self._waiting:
            if resource.pending is None:
                first = min(first, resource.ready_at)
        return first

    def poll(self, now: float) -> list[tuple[Waiter, AcquireResponse]]:
        """Serve the waiters whose tokens are available (unless remote) and time out those past
        their wait (one being decided remotely is settled instead)."""
        resolved: list[tuple[Waiter, AcquireResponse]] = []
        if not self.remote:
            for resource in [r for r in self._waiting if r.ready_at <= now and not r.pending]:
                self._serve(resource, now, resolved)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            waiter = heapq.heappop(deadlines)[2]
            if waiter.live and waiter is not waiter.resource.pending:
                resource = waiter.resource
                self.cancel(waiter, now)
                self._count(resource, waiter.client, denied=1)
                retry_after = resource.ready_at - now if resource.queue else 0.0
                if resource.limiter is not None:
                    retry_after = max(retry_after, resource.limiter.available_at(now, 1) - now)
                resolved.append(
                    (
                        waiter,
                        self._refusal(
                            resource, waiter.tokens, retry_after, now - waiter.enqueued, now
                        ),
                    )
                )
        return resolved

    def take(self, now: float) -> tuple[list[Waiter], list[tuple[Waiter, AcquireResponse]]]:
        """Remote: the waiters whose admission is to be decided now, one per resource whose
        turn has come (each `pending` until `settle`), and the answers already due."""
        taken: list[Waiter] = []
        resolved: list[tuple[Waiter, AcquireResponse]] = []
        for resource in [r for r in self._waiting if r.ready_at <= now and not r.pending]:
            while (waiter := self._next_admission(resource, now, resolved)) is not None:
                if resource.limiter is not None:
                    resource.pending = waiter
                    taken.append(waiter)
                    break
                self._admit(waiter, None, now, resolved)  # the limit was lifted meanwhile
        return taken, resolved

    def settle(
        self, waiter: Waiter, decision: Decision | None, now: float
    ) -> list[tuple[Waiter, AcquireResponse]]:
        """Remote: apply the decision on a waiter `take` handed out; None decides it here with
        the local limiter (Redis was unreachable). A waiter that cannot be admitted within its
        wait is refused at once."""
        resource = waiter.resource
        resource.pending = None
        self._waiting.add(resource)
        resource.ready_at = min(resource.ready_at, now)
        limiter = resource.limiter
        resolved: list[tuple[Waiter, AcquireResponse]] = []
        if not waiter.live:  # its client left meanwhile; what Redis granted it stays spent
            return resolved
        if decision is None:
            decision = limiter.acquire(now, waiter.tokens) if limiter is not None else None
        elif decision.granted and limiter is not None:
            limiter.acquire(now, waiter.tokens)  # this daemon's grants count here too
        if self._admit(waiter, decision, now, resolved):
            resource.ready_at = now
        elif decision is not None and now + decision.retry_after > waiter.deadline:
            self.cancel(waiter, now)
            self._count(resource, waiter.client, denied=1)
            response = self._refusal(
                resource, waiter.tokens, decision.retry_after, now - waiter.enqueued, now
            )
            response.remaining, response.reset_after = decision.remaining, decision.reset_after
            resolved.append((waiter, response))
        return resolved

    def _serve(
        self, resource: Resource, now: float, resolved: list[tuple[Waiter, AcquireResponse]]
    ) -> None:
        while (waiter := self._next_admission(resource, now, resolved)) is not None:
            limiter = resource.limiter
            decision = None if limiter is None else limiter.acquire(now, waiter.tokens)
            if not self._admit(waiter, decision, now, resolved):
                return

    def _next_admission(
        self, resource: Resource, now: float, resolved: list[tuple[Waiter, AcquireResponse]]
    ) -> Waiter | None:
        """The waiter whose turn it is, refusing those the limit can no longer fit; None when
        nobody may go yet (ready_at says when) or nobody waits."""
        limiter = resource.limiter
        if limiter is not None:
            self._trim(resource, now, limiter.window)
        while resource.queue:
            waiter = self._next_in_turn(resource, now)
            if waiter is None or limiter is None or waiter.tokens <= limiter.limit:
                return waiter
            self.cancel(waiter, now)  # the limit shrank under it
            response = self._refusal(resource, waiter.tokens, 0.0, now - waiter.enqueued, now)
            response.reason = f"the limit of {resource.id} is now {limiter.describe()}"
            resolved.append((waiter, response))
        resource.ready_at = math.inf
        self._waiting.discard(resource)
        return None

    def _admit(
        self,
        waiter: Waiter,
        decision: Decision | None,
        now: float,
        resolved: list[tuple[Waiter, AcquireResponse]],
    ) -> bool:
        """Grant the waiter if the decision (None: no limit) admits it; else wait for the
        retry time."""
        resource = waiter.resource
        if decision is not None and not decision.granted:
            resource.ready_at = now + decision.retry_after
            return False
        queue, client_id = resource.queue, waiter.client.id
        waiters = queue[client_id]
        waiters.popleft()
        waiter.live = False
        self._done_waiting(waiter.client, now)
        if waiters:
            queue.move_to_end(client_id)  # round-robin: this client goes to the back
        else:
            del queue[client_id]
        self._grant(waiter.client, resource, waiter.tokens, now)
        self._count(resource, waiter.client, waited=now - waiter.enqueued)
        response = AcquireResponse(
            granted=True,
            tokens=waiter.tokens,
            retry_after=0.0,
            reset_after=0.0,
            waited=now - waiter.enqueued,
        )
        limiter = resource.limiter
        if decision is not None and limiter is not None and resource.spec is not None:
            response.reset_after = decision.reset_after
            response.remaining = decision.remaining
            response.limit = limiter.limit
            response.window = limiter.window
            response.algorithm = limiter.algorithm
            response.limit_source = resource.spec.source
            response.share = self.share(resource, waiter.client.id, now)
        resolved.append((waiter, response))
        return True

    def _next_in_turn(self, resource: Resource, now: float) -> Waiter | None:
        """The first client in round-robin order that is within its share; else, of those past
        their grace, the one holding least; else None (and ready_at set to the next grace end)."""
        eligible_at = math.inf
        chosen: Waiter | None = None
        held = resource.held
        for waiters in resource.queue.values():
            waiter = waiters[0]
            if self._within_share(resource, waiter.client.id, waiter.tokens):
                return waiter
            if waiter.eligible_at > now:
                eligible_at = min(eligible_at, waiter.eligible_at)
            elif chosen is None or held.get(waiter.client.id, 0) < held.get(chosen.client.id, 0):
                chosen = waiter
        if chosen is None:
            resource.ready_at = eligible_at
        return chosen

    def _within_share(self, resource: Resource, client_id: str, tokens: int) -> bool:
        """Whether taking `tokens` keeps the client within an equal share of the window among
        the clients competing (holding tokens or waiting). A client holding none always is."""
        held = resource.held.get(client_id, 0)
        if held == 0 or resource.limiter is None:
            return True
        competing = len(resource.held) + len(resource.queue)  # an upper bound, cheap
        limit = resource.limiter.limit
        if (held + tokens) * competing <= limit:
            return True
        competing = len(resource.held.keys() | resource.queue.keys())
        return competing == 1 or (held + tokens) * competing <= limit

    def _declare(
        self, client: Client, resource: Resource, request: Acquire | ReportGrants, now: float
    ) -> None:
        if request.limit is None or request.window is None:
            missing = "window" if request.window is None else "limit"
            raise CoordinatorError(f"{missing}: a declared limit needs both limit and window")
        algorithm = request.algorithm or self.default_algorithm
        spec = LimitSpec(request.limit, request.window, algorithm, f"client:{client.id}")
        self._declare_spec(client, resource, spec, now)

    def _declare_spec(
        self, client: Client, resource: Resource, spec: LimitSpec, now: float
    ) -> None:
        if spec.same_as(resource.declared.get(client.id)):
            return
        try:
            make_limiter(spec.algorithm, spec.limit, spec.window)
        except RateLimitError as exc:
            raise CoordinatorError(f"algorithm: {exc}") from None
        resource.declared[client.id] = spec
        self._apply_spec(resource, now)

    def _grant(self, client: Client, resource: Resource, tokens: int, now: float) -> None:
        resource.tokens += tokens
        client.uses[resource.id].tokens += tokens
        if resource.limiter is not None:
            history = resource.history
            held = resource.held
            if len(history) >= _HISTORY:
                self._drop_oldest(resource)
            history.append((now, tokens, client.id))
            held[client.id] = held.get(client.id, 0) + tokens
        self._count(resource, client, granted=tokens)

    def _trim(self, resource: Resource, now: float, window: float) -> None:
        """Grants older than the window no longer count towards anyone's share."""
        history = resource.history
        while history and history[0][0] + window <= now:
            self._drop_oldest(resource)

    def _drop_oldest(self, resource: Resource) -> None:
        _, tokens, client_id = resource.history.popleft()
        left = resource.held[client_id] - tokens
        if left:
            resource.held[client_id] = left
        else:
            del resource.held[client_id]

    def _count(
        self,
        resource: Resource,
        client: Client,
        granted: int = 0,
        denied: int = 0,
        waited: float = -1.0,
    ) -> None:
        """Usage counters for the rate_limit_usage query: granted, denied, waits, wait total."""
        key = (resource.id, client.tool or "unknown")
        counters = self.usage.get(key)
        if counters is None:
            counters = self.usage[key] = [0, 0, 0, 0.0]
        counters[0] += granted
        counters[1] += denied
        if waited >= 0:
            counters[2] += 1
            counters[3] += waited

    def take_usage(self) -> dict[tuple[str, str], list[float]]:
        usage, self.usage = self.usage, {}
        return usage

    def _refusal(
        self, resource: Resource, tokens: int, retry_after: float, waited: float, now: float
    ) -> AcquireResponse:
        limiter = resource.limiter
        assert limiter is not None and resource.spec is not None
        return AcquireResponse(
            granted=False,
            tokens=tokens,
            remaining=limiter.remaining(now),
            limit=limiter.limit,
            window=limiter.window,
            algorithm=limiter.algorithm,
            limit_source=resource.spec.source,
            retry_after=max(0.0, retry_after),
            reset_after=max(0.0, limiter.available_at(now, limiter.limit) - now),
            waited=waited or None,
            reason="rate limit reached"
            if waited == 0
            else "max_wait passed before tokens were free",
        )

    def _resource(self, resource_id: str, now: float, checked: bool = True) -> Resource:
        """The resource's state, tracked from its first use; new 2.0 ids are checked, the Go
        tool's are taken as sent."""
        resource = self.resources.get(resource_id)
        if resource is not None:
            return resource
        if checked:
            try:
                validate_resource_id(resource_id)
            except ValueError as exc:
                raise CoordinatorError(f"resource_id: {exc}") from None
        if len(self.resources) >= MAX_RESOURCES:
            raise CoordinatorError(
                f"too many resources ({MAX_RESOURCES}) are tracked; retry once idle ones expire"
            )
        resource = self.resources[resource_id] = Resource(
            resource_id, self._configured(resource_id), now
        )
        self._apply_spec(resource, now)
        return resource

    # ---- restarts and outages ----------------------------------------------------------------

    def share(self, resource: Resource, client_id: str, now: float) -> int | None:
        """The client's safe share of the limit, for when it cannot reach the daemon (as
        youtube/doorman's safe capacity): the limit divided among the clients that asked for,
        hold or wait for tokens of the resource in the last window (this one included), the
        remainder one token each to the first in id order, so that the shares of a stable set
        of clients add up to the limit exactly. None without a limit."""
        limiter = resource.limiter
        if limiter is None:
            return None
        shares = resource.shares
        if client_id not in shares or now - resource.shares_at >= SHARES_EVERY:
            asked = resource.asked
            for gone in [c for c, at in asked.items() if at <= now - limiter.window]:
                del asked[gone]
            clients = asked.keys() | resource.held.keys() | resource.queue.keys() | {client_id}
            base, extra = divmod(limiter.limit, len(clients))
            shares = {c: base + (rank < extra) for rank, c in enumerate(sorted(clients))}
            resource.shares, resource.shares_at = shares, now
        return shares[client_id]

    def report_grants(
        self, client: Client, request: ReportGrants, times: Sequence[float], now: float
    ) -> int:
        """A client back from an outage gives its own account of its grants in the last window
        (`times`, monotonic, one token each): it replaces what this daemon remembers of that
        client's grants, so that its local grants count and none counts twice. Only times
        within the window count, at most the limit of them (the newest). Returns how many."""
        client.last_seen = now
        resource = self._resource(request.resource_id, now)
        if request.limit is not None or request.window is not None:
            self._declare(client, resource, request, now)
        resource.last_activity = now
        client.uses.setdefault(resource.id, Use())
        spec, limiter = resource.spec, resource.limiter
        if spec is None or limiter is None:
            return 0
        self._trim(resource, now, limiter.window)
        counted = sorted(min(t, now) for t in times if t > now - limiter.window)[-limiter.limit :]
        others = [grant for grant in resource.history if grant[2] != client.id]
        mine = [(t, 1, client.id) for t in counted]
        self._set_history(resource, heapq.merge(others, mine))
        self._requeue(resource, now)
        return len(counted)

    def saved_grants(self, now: float) -> list[tuple[str, float, list[tuple[float, int, str]]]]:
        """What a restart must not forget, per limited resource: its window and its grants
        still within it (monotonic times, oldest first; the newest up to the limit)."""
        saved = []
        for resource in self.resources.values():
            limiter = resource.limiter
            if limiter is None or not resource.history:
                continue
            self._trim(resource, now, limiter.window)
            newest = _newest(resource.history, limiter.limit)
            if newest:
                saved.append((resource.id, limiter.window, newest))
        return saved

    def restore_grants(
        self,
        resource_id: str,
        window: float,
        grants: Sequence[tuple[float, int, str]],
        now: float,
    ) -> None:
        """Grants an earlier daemon made (monotonic times, oldest first) count here as if made
        here: those still within `window` join the history (and the limiter, once the
        resource has a limit). A bad resource id raises CoordinatorError."""
        resource = self._resource(resource_id, now)
        recent = sorted(g for g in grants if now - window < g[0] <= now and g[1] >= 1)
        self._set_history(resource, heapq.merge(resource.history, recent))

    def _set_history(self, resource: Resource, grants: Iterable[tuple[float, int, str]]) -> None:
        """Replace the resource's recent grants (oldest first): the shares held and the
        limiter are made again from them."""
        resource.history = deque(grants)
        while len(resource.history) > _HISTORY:
            resource.history.popleft()
        resource.held = {}
        for _, tokens, client_id in resource.history:
            resource.held[client_id] = resource.held.get(client_id, 0) + tokens
        if resource.spec is not None:
            resource.limiter = _replay(resource.spec, resource.history)

    def _requeue(self, resource: Resource, now: float) -> None:
        """The limiter changed under the waiters: look at them again now."""
        if resource.queue:
            resource.ready_at = now
            self._waiting.add(resource)

    # ---- protocol 2.0: schedules, executions, state ---------------------------------------------

    def register_schedule(self, client: Client, request: RegisterSchedule, now: float) -> None:
        schedule = request.schedule
        if schedule.type == "count" and schedule.count is None:
            raise CoordinatorError("schedule.count: a count schedule needs count")
        if schedule.type == "duration" and schedule.duration is None:
            raise CoordinatorError("schedule.duration: a duration schedule needs duration")
        resource = self._resource(request.resource_id, now)
        resource.last_activity = client.last_seen = now
        use = client.uses.setdefault(resource.id, Use())
        use.schedule = schedule
        if schedule.type == "count":
            use.schedule_ends = now + (schedule.count or 0) * schedule.interval
        elif schedule.type == "duration":
            use.schedule_ends = now + (schedule.duration or 0.0)
        else:
            use.schedule_ends = math.inf

    def record_executions(
        self, client: Client, records: Sequence[ExecutionMetrics], now: float
    ) -> None:
        """Count reported executions per resource and client; a bad id refuses the batch."""
        resources = [self._resource(r.resource_id, now) for r in records]
        client.last_seen = now
        for resource, record in zip(resources, records, strict=True):
            resource.executions += 1
            resource.last_activity = now
            use = client.uses.get(resource.id)
            if use is None:
                use = client.uses[resource.id] = Use()
            use.executions += 1
            end = record.start_time + record.duration
            use.last_execution = max(use.last_execution or end, end)

    def resource_state(
        self, resource_id: str | None, now: float, wall_offset: float
    ) -> list[SharedResource]:
        """The seed's SharedResource for one resource or all; `wall_offset` turns monotonic
        times into Unix seconds."""
        if resource_id is not None:
            chosen = [self.resources[resource_id]] if resource_id in self.resources else []
        else:
            chosen = [self.resources[k] for k in sorted(self.resources)]
        return [self._state(resource, now, wall_offset) for resource in chosen]

    def sleeping_v1(self, wall_now: float) -> int:
        """Protocol 1.0 clients refused and asleep until their booked slot."""
        return sum(self._prune_bookings(r, wall_now).sleeping() for r in self.resources.values())

    def active_clients(self, resource_id: str) -> list[str]:
        return sorted(c.id for c in self.clients.values() if resource_id in c.uses)

    def _state(self, resource: Resource, now: float, wall_offset: float) -> SharedResource:
        clients: dict[str, ClientState] = {}
        by_tool: dict[str, int] = {}
        for client in self.clients.values():
            use = client.uses.get(resource.id)
            if use is None:
                continue
            clients[client.id] = ClientState(
                client_id=client.id,
                tool=client.tool,
                last_execution=use.last_execution,
                execution_count=use.executions,
                rate_limit_tokens=use.tokens,
                connected=client.connections > 0,
                schedule=use.schedule if use.schedule_ends >= now else None,  # None: finished
            )
            by_tool[client.tool] = by_tool.get(client.tool, 0) + 1
        limit = None
        if resource.limiter is not None and resource.spec is not None:
            window = resource.limiter.window
            bookings = self._prune_bookings(resource, now + wall_offset)
            limit = RateLimitState(
                limit=resource.limiter.limit,
                window=window,
                algorithm=resource.limiter.algorithm,
                source=resource.spec.source,
                remaining=max(
                    0,
                    resource.limiter.remaining(now) - bookings.counting(now + wall_offset, window),
                ),
                waiting=sum(len(q) for q in resource.queue.values()) + bookings.sleeping(),
                booked=len(bookings),
            )
        return SharedResource(
            id=resource.id,
            type=resource_type(resource.id),
            rate_limit=limit,
            active_clients=clients,
            clients_by_tool=by_tool,
            total_executions=resource.executions,
            tokens_granted=resource.tokens,
            last_activity=resource.last_activity + wall_offset,
        )

    # ---- protocol 1.0 ---------------------------------------------------------------------------

    def schedule_v1(
        self, client: Client, request: ScheduleRequest, now: float, wall_now: float
    ) -> Answer:
        """Decide a Go client's plan and book it (see patience.daemon.bookings): the limit in
        force is the configured one, else the strictest declared, as for protocol 2.0."""
        if not request.retry_offsets:  # the Go CLI's probe: nothing to book, nothing to track
            window = request.window_ms / 1000
            return Answer(True, float(request.request_time), [], False, request.rate_limit, window)
        client.last_seen = now
        resource = self._resource(request.resource_id, now, checked=False)
        resource.last_activity = now
        spec = LimitSpec(
            request.rate_limit, request.window_ms / 1000, DEFAULT_ALGORITHM, f"client:{client.id}"
        )
        self._declare_spec(client, resource, spec, now)
        assert resource.spec is not None
        limit, window = resource.spec.limit, resource.spec.window
        bookings = self._prune_bookings(resource, wall_now)
        self._check_room(resource, len(request.retry_offsets), wall_now)
        answer = decide(
            bookings.times(), request.request_time, request.retry_offsets, limit, window, wall_now
        )
        self._book(resource, answer.times, [at + window for at in answer.times])
        if not answer.fits:
            bookings.sleep_until(answer.start)
        client.booking = (resource.id, len(answer.times))
        use = client.uses.setdefault(resource.id, Use())
        use.tokens += len(answer.times)
        resource.tokens += len(answer.times)
        waited = answer.start - max(float(request.request_time), wall_now)
        self._count(
            resource, client, granted=len(answer.times), denied=int(not answer.fits), waited=waited
        )
        return answer

    def register_v1(
        self, client: Client, requests: Sequence[RegisteredRequest], now: float, wall_now: float
    ) -> None:
        """Register attempts. Those that follow this client's own plan confirm its booking (the
        Go client registers what it was answered for, with its original request time); the
        others are booked as sent, each counting until its expiry."""
        client.last_seen = now
        resource_id, confirming = client.booking or ("", 0)
        client.booking = None
        by_resource: dict[str, list[RegisteredRequest]] = {}
        for entry in requests:
            if entry.resource_id == resource_id and confirming:
                confirming -= 1
            elif entry.expires_at > wall_now:
                by_resource.setdefault(entry.resource_id, []).append(entry)
        for rid, entries in by_resource.items():
            resource = self._resource(rid, now, checked=False)
            resource.last_activity = now
            self._prune_bookings(resource, wall_now)
            self._check_room(resource, len(entries), wall_now)
            self._book(
                resource,
                [float(e.scheduled_at) for e in entries],
                [float(e.expires_at) for e in entries],
            )

    def _prune_bookings(self, resource: Resource, wall_now: float) -> Bookings:
        before = len(resource.bookings)
        resource.bookings.prune(wall_now)
        self._booked_total -= before - len(resource.bookings)
        return resource.bookings

    def _check_room(self, resource: Resource, adding: int, wall_now: float) -> None:
        if len(resource.bookings) + adding > MAX_V1_ENTRIES_PER_RESOURCE:
            raise CoordinatorError(
                f"too many booked requests for {resource.id} ({MAX_V1_ENTRIES_PER_RESOURCE});"
                " retry when some expire"
            )
        if self._booked_total + adding > MAX_BOOKED:
            for other in self.resources.values():  # housekeeping prunes a slice at a time
                self._prune_bookings(other, wall_now)
        if self._booked_total + adding > MAX_BOOKED:
            raise CoordinatorError(
                f"too many booked requests ({MAX_BOOKED}); retry when some expire"
            )

    def _book(self, resource: Resource, times: list[float], expires: list[float]) -> None:
        resource.bookings.add(times, expires)
        self._booked_total += len(times)

    # ---- clean-up -------------------------------------------------------------------------------

    def expire(self, now: float, wall_now: float) -> None:
        """Forget clients idle for longer than client_ttl (their declared limits go with them),
        expired bookings and idle resources with nothing to remember. A pass does about SWEEP
        steps (a client, one of its resources, a resource), the rest waits for the next:
        idle clients are kept in the order they went idle, so those due are found at once,
        and resources are looked at in rounds, a slice per pass."""
        budget = SWEEP
        for idle in list(self._idle.values()):
            while idle and budget > 0:
                client = next(iter(idle.values()))
                if now - client.last_seen <= self.client_ttl:
                    break
                self._forget(client, now)
                budget -= 1 + len(client.uses)
        sweep = self._sweep
        if sweep is None:
            sweep = self._sweep = _Sweep(list(self.clients.values()), list(self.resources), now)
        while sweep.clients and budget > 0:
            uses = sweep.clients.pop().uses
            sweep.in_use.update(uses)
            budget -= 1 + len(uses)
        while sweep.resources and budget > 0:
            resource = self.resources.get(sweep.resources.pop())
            budget -= 1
            if resource is not None and self._forgettable(resource, sweep, now, wall_now):
                del self.resources[resource.id]
        if not (sweep.clients or sweep.resources):
            self._sweep = None

    def _forgettable(self, resource: Resource, sweep: _Sweep, now: float, wall_now: float) -> bool:
        """Nothing to remember: nobody waits, books, declares or uses it (a resource gets a use
        only along with activity, so one active since the round began may have a use the round
        did not see), no activity within client_ttl, and a full limiter."""
        self._prune_bookings(resource, wall_now)
        if (
            resource.queue
            or resource.bookings
            or resource.declared
            or resource.id in sweep.in_use
            or now - resource.last_activity <= self.client_ttl
            or resource.last_activity >= sweep.started
        ):
            return False
        limiter = resource.limiter
        return limiter is None or limiter.remaining(now) == limiter.limit


class _Sweep:
    """One clean-up round: the clients to look at for the resources they use, then the ids of
    the resources to check, both as they were when the round began."""

    __slots__ = ("clients", "in_use", "resources", "started")

    def __init__(self, clients: list[Client], resources: list[str], started: float) -> None:
        self.clients = clients
        self.resources = resources
        self.in_use: set[str] = set()
        self.started = started


def _replay(spec: LimitSpec, history: deque[tuple[float, int, str]]) -> Limiter:
    """A limiter for `spec` that has seen the recent grants: the newest that fit within the
    limit, in order (for the sliding-window log exactly the state that decides what comes
    next; older grants can no longer refuse anything it would not)."""
    limiter = make_limiter(spec.algorithm, spec.limit, spec.window)
    for at, tokens, _ in _newest(history, spec.limit):
        limiter.acquire(at, tokens)
    return limiter


def _newest(history: deque[tuple[float, int, str]], limit: int) -> list[tuple[float, int, str]]:
    """The newest grants whose tokens add up to at most `limit`, oldest first."""
    newest = []
    total = 0
    for grant in reversed(history):
        total += grant[1]
        if total > limit:
            break
        newest.append(grant)
    return newest[::-1]


def _strictest(declared: dict[str, LimitSpec]) -> LimitSpec | None:
    """The declared limit with the lowest rate; on equal rates the smaller burst."""
    if not declared:
        return None
    return min(declared.values(), key=lambda s: (s.limit / s.window, s.limit))


def resource_type(resource_id: str) -> str:
    """The seed's ResourceType, from the id's prefix (api:, database:, filesystem:, network:)."""
    kind = resource_id.partition(":")[0]
    return kind if kind in ("api", "database", "filesystem", "network") else "generic"
