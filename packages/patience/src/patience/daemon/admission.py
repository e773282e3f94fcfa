"""Fair-share admission of protocol 2.0 token requests, as pure code: the clock is a parameter.

Per limited resource, a queue of waiting requests: first come, first served within a client and
round-robin across clients. A request that would wait longer than it allows is refused at once
with the time to retry. A waiter that goes away loses its place.

Fair shares. Round-robin alone would reward speed: when tokens free up, a client that comes
back quickly from its last grant finds the queue empty and takes them all. So each resource
counts the tokens each client holds in the current window; a client that already holds its
equal share (limit / clients competing) while others compete waits a short grace period
before it may take more, and the others, served first in that time, catch up. Grants thus
converge to max-min fair shares (a client asking for less than its share gets all it asks,
the others split the rest), and no capacity is held back longer than the grace.

The daemon calls `poll(now)` at `next_wakeup()` to hand tokens to waiters and to time out waits.

Remote admission (the Redis backend, daemons on many hosts sharing one limit). While remote,
every request with a limit joins the queue, and the admissions themselves are decided
elsewhere: `take(now)` hands out, for each resource whose turn has come, a batch: the waiters
the queue would serve next, in the order it would serve them were each admitted (the same
round-robin turns and fair shares as above, the batch's tokens counting as held). `settle`
applies the decisions that come back in that order, up to the first refusal: nobody passes
the head of the queue, so the waiters after it stay queued for the next batch. One batch per
resource is in flight at a time. The local limiter keeps counting this daemon's own grants:
they bound what Redis can allow (a request that cannot fit here is refused or queued without
asking), and when Redis is unreachable admission turns local and the local limits carry on
from them.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence

from patience.daemon.errors import CoordinatorError
from patience.daemon.protocol import AcquireResponse
from patience.daemon.registry import Client, Registry
from patience.daemon.resources import Resource
from patience.daemon.usage import Usage
from patience.ratelimit.algorithms import Decision, Limiter

__all__ = ["ASK_GRACE", "BATCH", "SHARES_EVERY", "Admission", "Resolved", "Waiter"]

SHARES_EVERY = 0.1  # seconds a resource's shares are reused before they are worked out again
ASK_GRACE = 0.5  # remote: seconds past its wait a request may wait to be asked once
BATCH = 128  # remote: the most requests of a resource decided in one call
_NONE_HELD: Mapping[str, int] = {}  # no tokens counted as held besides the resource's own


class Waiter:
    """One acquire request waiting in a resource's queue."""

    __slots__ = (
        "asked",
        "client",
        "cutoff",
        "deadline",
        "eligible_at",
        "enqueued",
        "live",
        "resource",
        "tokens",
    )

    def __init__(
        self,
        client: Client,
        resource: Resource,
        tokens: int,
        now: float,
        deadline: float,
        cutoff: float,
    ) -> None:
        self.client = client
        self.resource = resource
        self.tokens = tokens
        self.enqueued = now
        self.deadline = deadline
        self.cutoff = cutoff  # refused unasked from then (remote: a little past its deadline)
        self.eligible_at = min(deadline, now + resource.grace)  # may exceed its share from then
        self.live = True
        self.asked = False  # remote: in a batch being decided

    @property
    def resource_id(self) -> str:
        return self.resource.id

    @property
    def limiter(self) -> Limiter | None:
        """The limit it waits under (always one for a waiter `take` hands out)."""
        return self.resource.limiter


Resolved = list[tuple[Waiter, AcquireResponse]]


class Admission:
    def __init__(self, registry: Registry, usage: Usage) -> None:
        self._registry = registry
        self._usage = usage
        self._remote = False  # admissions are decided elsewhere: see take and settle
        self._waiting: set[Resource] = set()
        self._deadlines: list[tuple[float, int, Waiter]] = []
        self._sequence = 0

    @property
    def remote(self) -> bool:
        return self._remote

    def set_remote(self, remote: bool) -> None:
        self._remote = remote

    def acquire(
        self, client: Client, resource: Resource, tokens: int, max_wait: float, now: float
    ) -> AcquireResponse | Waiter:
        """A decision now, or a Waiter that `poll` (or `take` and `settle`) resolves later."""
        limiter = resource.limiter
        if limiter is None:
            self._grant(client, resource, tokens, now)
            return AcquireResponse(granted=True, tokens=tokens, retry_after=0.0, reset_after=0.0)
        resource.asked[client.id] = now
        resource.trim(now, limiter.window)
        if tokens > limiter.limit:
            raise CoordinatorError(
                f"tokens: {tokens} at once can never fit the limit of {resource.id},"
                f" {limiter.describe()} (ask for at most {limiter.limit})"
            )
        first = not (resource.queue or self._remote)
        holds = resource.held.get(client.id, 0)
        if first and (max_wait == 0 or self._within_share(resource, holds, tokens)):
            decision = limiter.acquire(now, tokens)
            if decision.granted:
                self._grant(client, resource, tokens, now)
                return self._response(resource, client, tokens, decision, now)
            retry_after = decision.retry_after
        elif first:  # over its share while others compete: let them go first
            retry_after = max(limiter.available_at(now, tokens) - now, resource.grace)
        else:  # others wait first, or remote: at best after the head, and when ours fit here
            ready_at = resource.ready_at if resource.queue else now
            retry_after = max(limiter.available_at(now, tokens), ready_at) - now
        if retry_after > max_wait:
            resource.refused += 1
            self._usage.count(resource.id, client.tool, denied=1)
            refusal = self._refusal(resource, tokens, retry_after, 0.0, now)
            refusal.share = self.share(resource, client.id, now)
            refusal.ahead, refusal.estimated_wait = _estimate(resource, limiter, tokens, now)
            return refusal
        return self._enqueue(client, resource, tokens, now, now + max_wait, retry_after)

    def _enqueue(
        self,
        client: Client,
        resource: Resource,
        tokens: int,
        now: float,
        deadline: float,
        retry_after: float,
    ) -> Waiter:
        # Remote: each ask checks the wait (settle), and asks go a batch at a time, so a request
        # is given ASK_GRACE to be asked at all before its deadline refuses it unasked.
        cutoff = deadline + ASK_GRACE if self._remote else deadline
        waiter = Waiter(client, resource, tokens, now, deadline, cutoff)
        queue = resource.queue.get(client.id)
        if queue is None:
            queue = resource.queue[client.id] = deque()
        queue.append(waiter)
        self._registry.start_waiting(client)
        if len(resource.queue) == 1 and len(queue) == 1:
            resource.ready_at = now + retry_after
        else:  # the newcomer may be within its share where those ahead are not
            resource.ready_at = min(resource.ready_at, now)
        self._waiting.add(resource)
        self._sequence += 1
        heapq.heappush(self._deadlines, (cutoff, self._sequence, waiter))
        return waiter

    def cancel(self, waiter: Waiter, now: float) -> None:
        """The waiter's client went away: it leaves the queue and holds nothing."""
        if not waiter.live:
            return
        waiter.live = False
        self._registry.done_waiting(waiter.client, now)
        resource = waiter.resource
        queue = resource.queue[waiter.client.id]
        was_head = next(iter(resource.queue)) == waiter.client.id and queue[0] is waiter
        queue.remove(waiter)
        if not queue:
            del resource.queue[waiter.client.id]
        if was_head:
            resource.ready_at = now  # the next waiter may fit where this one did not

    def requeue(self, resource: Resource, now: float) -> None:
        """The limiter changed under the waiters: look at them again now."""
        if resource.queue:
            resource.ready_at = now
            self._waiting.add(resource)

    def next_wakeup(self) -> float:
        """When `poll` has something to do next (inf when nothing waits)."""
        deadlines = self._deadlines
        while deadlines and not deadlines[0][2].live:
            heapq.heappop(deadlines)
        first = deadlines[0][0] if deadlines else math.inf
        for resource in self._waiting:
            if not resource.pending:
                first = min(first, resource.ready_at)
        return first

    def poll(self, now: float) -> Resolved:
        """Serve the waiters whose tokens are available (unless remote) and time out those past
        their wait (those being decided remotely are settled instead)."""
        resolved: Resolved = []
        if not self._remote:
            for resource in [r for r in self._waiting if r.ready_at <= now and not r.pending]:
                self._serve(resource, now, resolved)
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            waiter = heapq.heappop(deadlines)[2]
            if waiter.live and not waiter.asked:
                resolved.append((waiter, self._time_out(waiter, now)))
        return resolved

    def _time_out(self, waiter: Waiter, now: float) -> AcquireResponse:
        resource = waiter.resource
        self.cancel(waiter, now)
        resource.refused += 1
        self._usage.count(resource.id, waiter.client.tool, denied=1)
        retry_after = resource.ready_at - now if resource.queue else 0.0
        if resource.limiter is not None:
            retry_after = max(retry_after, resource.limiter.available_at(now, 1) - now)
        return self._refusal(resource, waiter.tokens, retry_after, now - waiter.enqueued, now)

    def take(self, now: float) -> tuple[list[list[Waiter]], Resolved]:
        """Remote: for each resource whose turn has come, the batch of waiters to decide now
        (`pending` until `settle`), and the answers already due."""
        batches: list[list[Waiter]] = []
        resolved: Resolved = []
        for resource in [r for r in self._waiting if r.ready_at <= now and not r.pending]:
            while (waiter := self._next_admission(resource, now, resolved)) is not None:
                if resource.limiter is not None:
                    resource.pending = batch = self._batch(resource, waiter, resource.limiter, now)
                    batches.append(batch)
                    break
                self._admit(waiter, None, now, resolved)  # the limit was lifted meanwhile
        return batches, resolved

    def _batch(
        self, resource: Resource, first: Waiter, limiter: Limiter, now: float
    ) -> list[Waiter]:
        """`first` and the waiters the queue would serve after it, in order, were each
        admitted: the turns `_admit` would give, with the batch's tokens counted as held. It
        ends where nobody may go yet, before a request the limit cannot fit (the next `take`
        refuses it), or at BATCH."""
        queue = resource.queue
        order = deque(queue)  # client ids, in turn
        served: dict[str, int] = {}  # client id -> how many of its waiters the batch has
        extra: dict[str, int] = {}  # client id -> the tokens the batch gives it
        batch: list[Waiter] = []
        waiter: Waiter | None = first
        while waiter is not None and waiter.tokens <= limiter.limit and len(batch) < BATCH:
            waiter.asked = True
            batch.append(waiter)
            client_id = waiter.client.id
            count = served[client_id] = served.get(client_id, 0) + 1
            extra[client_id] = extra.get(client_id, 0) + waiter.tokens
            order.remove(client_id)
            if count < len(queue[client_id]):
                order.append(client_id)  # round-robin: this client goes to the back
            heads = (queue[c][served.get(c, 0)] for c in order)
            waiter = self._next_in_turn(resource, heads, extra, now)[0]
        return batch

    def settle(
        self, batch: list[Waiter], decisions: Sequence[Decision] | None, now: float
    ) -> Resolved:
        """Remote: apply the decisions on a batch `take` handed out, in its order. They end at
        the first refusal: the waiters after it were not asked and stay queued (refused now if
        their wait is over). None decides them here with the local limiter, up to its first
        refusal (Redis was unreachable)."""
        resource = batch[0].resource
        resource.pending = None
        self._waiting.add(resource)
        resource.ready_at = min(resource.ready_at, now)
        resolved: Resolved = []
        decided = len(batch) if decisions is None else len(decisions)
        for index, waiter in enumerate(batch):
            waiter.asked = False
            if index < decided:
                decision = None if decisions is None else decisions[index]
                if not self._settle(waiter, decision, now, resolved):
                    decided = index + 1
            elif waiter.live and waiter.cutoff <= now:  # its deadline passed while it was asked
                resolved.append((waiter, self._time_out(waiter, now)))
        return resolved

    def _settle(
        self, waiter: Waiter, decision: Decision | None, now: float, resolved: Resolved
    ) -> bool:
        """Apply one decision (None: the local limiter's); whether those after it may go. A
        waiter that cannot be admitted within its wait is refused at once."""
        if not waiter.live:  # its client left meanwhile; what Redis granted it stays spent
            return True
        resource = waiter.resource
        limiter = resource.limiter
        if decision is None:
            decision = limiter.acquire(now, waiter.tokens) if limiter is not None else None
        elif decision.granted and limiter is not None:
            limiter.acquire(now, waiter.tokens)  # this daemon's grants count here too
        if self._admit(waiter, decision, now, resolved):
            resource.ready_at = now
            return True
        if decision is not None and now + decision.retry_after > waiter.deadline:
            self.cancel(waiter, now)
            self._usage.count(resource.id, waiter.client.tool, denied=1)
            response = self._refusal(
                resource, waiter.tokens, decision.retry_after, now - waiter.enqueued, now
            )
            response.remaining, response.reset_after = decision.remaining, decision.reset_after
            resolved.append((waiter, response))
        return False

    def _serve(self, resource: Resource, now: float, resolved: Resolved) -> None:
        while (waiter := self._next_admission(resource, now, resolved)) is not None:
            limiter = resource.limiter
            decision = None if limiter is None else limiter.acquire(now, waiter.tokens)
            if not self._admit(waiter, decision, now, resolved):
                return

    def _next_admission(self, resource: Resource, now: float, resolved: Resolved) -> Waiter | None:
        """The waiter whose turn it is, refusing those the limit can no longer fit; None when
        nobody may go yet (ready_at says when) or nobody waits."""
        limiter = resource.limiter
        if limiter is not None:
            resource.trim(now, limiter.window)
        while resource.queue:
            heads = (waiters[0] for waiters in resource.queue.values())
            waiter, eligible_at = self._next_in_turn(resource, heads, _NONE_HELD, now)
            if waiter is None:
                resource.ready_at = eligible_at
                return None
            if limiter is None or waiter.tokens <= limiter.limit:
                return waiter
            self.cancel(waiter, now)  # the limit shrank under it
            response = self._refusal(resource, waiter.tokens, 0.0, now - waiter.enqueued, now)
            response.reason = f"the limit of {resource.id} is now {limiter.describe()}"
            resolved.append((waiter, response))
        resource.ready_at = math.inf
        self._waiting.discard(resource)
        return None

    def _admit(
        self, waiter: Waiter, decision: Decision | None, now: float, resolved: Resolved
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
        self._registry.done_waiting(waiter.client, now)
        if waiters:
            queue.move_to_end(client_id)  # round-robin: this client goes to the back
        else:
            del queue[client_id]
        self._grant(waiter.client, resource, waiter.tokens, now)
        waited = now - waiter.enqueued
        self._usage.count(resource.id, waiter.client.tool, waited=waited)
        if decision is not None and resource.limiter is not None:
            response = self._response(resource, waiter.client, waiter.tokens, decision, now)
            response.waited = waited
        else:
            response = AcquireResponse(
                granted=True, tokens=waiter.tokens, retry_after=0.0, reset_after=0.0, waited=waited
            )
        resolved.append((waiter, response))
        return True

    def _next_in_turn(
        self, resource: Resource, heads: Iterable[Waiter], extra: Mapping[str, int], now: float
    ) -> tuple[Waiter | None, float]:
        """Of `heads` (each client's next waiter, in round-robin order), the first whose client
        is within its share, counting `extra` tokens as held too; else, of those past their
        grace, the one holding least; else None. Also when the next grace ends."""
        eligible_at = math.inf
        chosen: Waiter | None = None
        chosen_holds = 0
        held = resource.held
        for waiter in heads:
            client_id = waiter.client.id
            holds = held.get(client_id, 0) + extra.get(client_id, 0)
            if self._within_share(resource, holds, waiter.tokens):
                return waiter, eligible_at
            if waiter.eligible_at > now:
                eligible_at = min(eligible_at, waiter.eligible_at)
            elif chosen is None or holds < chosen_holds:
                chosen, chosen_holds = waiter, holds
        return chosen, eligible_at

    def _within_share(self, resource: Resource, holds: int, tokens: int) -> bool:
        """Whether taking `tokens` keeps a client that holds `holds` within an equal share of
        the window among the clients competing (holding tokens or waiting). A client holding
        none always is."""
        if holds == 0 or resource.limiter is None:
            return True
        competing = len(resource.held) + len(resource.queue)  # an upper bound, cheap
        limit = resource.limiter.limit
        if (holds + tokens) * competing <= limit:
            return True
        competing = len(resource.held.keys() | resource.queue.keys())
        return competing == 1 or (holds + tokens) * competing <= limit

    def _grant(self, client: Client, resource: Resource, tokens: int, now: float) -> None:
        resource.tokens += tokens
        client.use(resource.id).tokens += tokens
        if resource.limiter is not None:
            resource.record(now, tokens, client.id)
        self._usage.count(resource.id, client.tool, granted=tokens)

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

    def _response(
        self, resource: Resource, client: Client, tokens: int, decision: Decision, now: float
    ) -> AcquireResponse:
        """A grant under the resource's limit, saying the limit and the client's share."""
        limiter = resource.limiter
        assert limiter is not None and resource.spec is not None
        return AcquireResponse(
            granted=True,
            tokens=tokens,
            retry_after=0.0,
            reset_after=decision.reset_after,
            remaining=decision.remaining,
            limit=limiter.limit,
            window=limiter.window,
            algorithm=limiter.algorithm,
            limit_source=resource.spec.source,
            share=self.share(resource, client.id, now),
        )

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


def _estimate(resource: Resource, limiter: Limiter, tokens: int, now: float) -> tuple[int, float]:
    """A predictive wait: the requests queued ahead, and the seconds until `tokens` more
    would be granted behind them: when the limiter frees them, plus the tokens queued ahead
    at the limit's rate."""
    ahead = sum(len(waiters) for waiters in resource.queue.values())
    queued = sum(w.tokens for waiters in resource.queue.values() for w in waiters)
    free = limiter.available_at(now, tokens) - now
    return ahead, max(0.0, free + queued * limiter.window / limiter.limit)
