"""The daemon's decisions, as pure code: the clock is a parameter, nothing here does I/O.

The Coordinator is what the request handlers, the Redis admission and the life cycle ask; it
holds the parts and lets nobody reach into them:
- the resources and the limit in force on each (patience.daemon.resources),
- the clients and their bookkeeping (patience.daemon.registry),
- fair-share admission of 2.0 token requests and its waiters (patience.daemon.admission),
- protocol 1.0 bookings (patience.daemon.ledger),
- usage counters for the metrics store (patience.daemon.usage),
- throttle feedback and the learned limits (patience.daemon.learner),
and itself keeps schedules, executions, the state view, what a restart must not forget, and
the clean-up of what nobody uses any more.

Times are seconds on the daemon's monotonic clock, except protocol 1.0 bookkeeping, which is in
the Unix seconds the Go client sends.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Mapping, Sequence

from patience.config.resources import ResourceLimit
from patience.daemon.admission import Admission, Resolved, Waiter
from patience.daemon.bookings import Answer
from patience.daemon.errors import CoordinatorError
from patience.daemon.feedback_messages import LearnedState
from patience.daemon.fleet_share import FleetShare
from patience.daemon.learner import Learner
from patience.daemon.ledger import Ledger
from patience.daemon.protocol import (
    Acquire,
    AcquireResponse,
    ExecutionMetrics,
    RegisteredRequest,
    RegisterSchedule,
    ReportGrants,
    ScheduleRequest,
)
from patience.daemon.registry import Client, Registry
from patience.daemon.resources import LimitSpec, Resource, Resources, resource_type
from patience.daemon.state_replies import ClientState, RateLimitState, SharedResource
from patience.daemon.usage import Usage
from patience.ratelimit.algorithms import Decision
from patience.ratelimit.learned import LearnedLimit, Learning

__all__ = ["SWEEP", "Client", "Coordinator", "CoordinatorError", "LimitSpec", "Waiter"]

SWEEP = 5_000  # clients and resources looked at per clean-up pass

Grants = list[tuple[float, int, str]]  # (time, tokens, client id), oldest first


class Coordinator:
    def __init__(
        self, limits: Mapping[str, ResourceLimit], default_algorithm: str, client_ttl: float
    ) -> None:
        self._usage = Usage()
        self._registry = Registry(client_ttl, self._forgotten)
        self._admission = Admission(self._registry, self._usage)
        self._resources = Resources(limits, default_algorithm, self._admission.requeue)
        self._ledger = Ledger(self._resources, self._usage)
        self._learner = Learner(self._resources)
        self._sweep: _Sweep | None = None  # the clean-up round in progress
        self._touched: set[str] = set()  # resources asked for tokens since take_touched
        self.fleet_share = FleetShare(self._resources.by_id)  # the limits while Redis is away

    # ---- what is tracked ----------------------------------------------------------------------

    @property
    def clients(self) -> Mapping[str, Client]:
        return self._registry.clients

    @property
    def resources(self) -> Mapping[str, Resource]:
        return self._resources.by_id

    def limit_of(self, resource_id: str) -> LimitSpec | None:
        """The limit in force on a tracked resource (None: untracked or unlimited)."""
        resource = self._resources.by_id.get(resource_id)
        return resource.spec if resource is not None else None

    def take_touched(self) -> set[str]:
        """The resources asked for tokens since the last call: only these can have come
        nearer their limit (alerts look at them, not at every resource, each second)."""
        touched, self._touched = self._touched, set()
        return touched

    def users_of(self, resource_id: str) -> dict[str, str]:
        """The connected clients that asked for, hold or wait for the resource's tokens,
        with their tools."""
        resource = self._resources.by_id.get(resource_id)
        if resource is None:
            return {}
        clients = self._registry.clients
        ids = resource.asked.keys() | resource.held.keys() | resource.queue.keys()
        return {cid: clients[cid].tool for cid in ids if cid in clients}

    def active_clients(self, resource_id: str) -> list[str]:
        clients = self._registry.clients.values()
        return sorted(c.id for c in clients if resource_id in c.uses)

    def sleeping_v1(self, wall_now: float) -> int:
        """Protocol 1.0 clients refused and asleep until their booked slot."""
        return self._ledger.sleeping(wall_now)

    # ---- configuration ------------------------------------------------------------------------

    def reload(
        self, limits: Mapping[str, ResourceLimit], default_algorithm: str, now: float
    ) -> None:
        """New configured limits; every resource's limit in force is re-evaluated."""
        self._resources.reload(limits, default_algorithm, now)

    def set_client_ttl(self, client_ttl: float) -> None:
        self._registry.client_ttl = client_ttl

    # ---- clients ------------------------------------------------------------------------------

    def connect(self, client_id: str, tool: str, now: float, owner: int = 0) -> Client:
        """A connection of peer uid `owner` speaks for `client_id` (patience.daemon.registry)."""
        return self._registry.connect(client_id, tool, now, owner)

    def disconnect(self, client: Client, now: float) -> None:
        self._registry.disconnect(client, now)

    def _forgotten(self, client: Client, now: float) -> None:
        self._resources.undeclare(client.id, client.uses, now)

    # ---- protocol 2.0: tokens (patience.daemon.admission) -------------------------------------

    def acquire(self, client: Client, request: Acquire, now: float) -> AcquireResponse | Waiter:
        """A decision now, or a Waiter that `poll` resolves later."""
        client.last_seen = now
        resource = self._resources.get(request.resource_id, now)
        if request.limit is not None or request.window is not None:
            self._resources.declare(client.id, resource, request, now)
        client.use(resource.id)
        resource.last_activity = now
        self._touched.add(resource.id)
        return self._admission.acquire(client, resource, request.tokens, request.max_wait, now)

    def cancel(self, waiter: Waiter, now: float) -> None:
        """The waiter's client went away: it leaves the queue and holds nothing."""
        self._admission.cancel(waiter, now)

    def next_wakeup(self) -> float:
        """When `poll` has something to do next (inf when nothing waits)."""
        return self._admission.next_wakeup()

    def poll(self, now: float) -> Resolved:
        """Serve the waiters whose tokens are available and time out those past their wait."""
        return self._admission.poll(now)

    @property
    def remote(self) -> bool:
        """Whether admissions are decided elsewhere (the Redis backend, while reachable)."""
        return self._admission.remote

    def set_remote(self, remote: bool) -> None:
        self._admission.set_remote(remote)
        self.fleet_share.apply(remote)

    def take(self, now: float) -> tuple[list[list[Waiter]], Resolved]:
        """Remote: the batches of waiters to decide now (one per resource whose turn has
        come), and the answers already due."""
        return self._admission.take(now)

    def settle(
        self, batch: list[Waiter], decisions: Sequence[Decision] | None, now: float
    ) -> Resolved:
        """Remote: apply the decisions on a batch `take` handed out, in order, up to the first
        refusal (None: decide them here)."""
        return self._admission.settle(batch, decisions, now)

    def share(self, resource: Resource, client_id: str, now: float) -> int | None:
        """The client's safe share of the resource's limit (patience.daemon.admission)."""
        return self._admission.share(resource, client_id, now)

    def take_usage(self) -> dict[tuple[str, str], list[float]]:
        """Usage counters since the last take, per (resource id, tool)."""
        return self._usage.take()

    # ---- throttle feedback and learned limits (patience.daemon.learner) -----------------------

    def throttled(
        self, client: Client, resource_id: str, retry_after: float | None, now: float
    ) -> tuple[Resource, bool]:
        """A client met a throttle signal: the resource pauses for `retry_after` and its
        limit learns. Returns the resource and whether its limit decreased."""
        client.last_seen = now
        resource = self._resources.get(resource_id, now)
        resource.last_activity = now
        client.use(resource.id)
        return resource, self._learner.throttled(resource, retry_after, now)

    def tick_learned(self, now: float) -> list[Resource]:
        """Judge the learned limits' windows and end the pauses that are over; the resources
        whose limit changed."""
        return self._learner.tick(now)

    def learning_for(self, resource_id: str) -> Learning:
        """How the resource's limit learns (its configured entry's, else the defaults)."""
        return self._resources.learning_for(resource_id)

    @property
    def learned(self) -> Mapping[str, LearnedLimit]:
        """The learned limits by resource id (tracked resources or not)."""
        return self._resources.learned

    def adopt_learned(
        self, resource_id: str, learned: LearnedLimit, now: float, pause: float | None = None
    ) -> None:
        """A learned limit from the state file or another host (and its pause, monotonic)."""
        self._learner.adopt(resource_id, learned, now, pause)

    def load_adapted(self) -> list[Resource]:
        """The tracked resources whose limits follow the host's load (adapt_to_load)."""
        by_id, ids = self._resources.by_id, self._resources.load_adapted
        for gone in [
            rid for rid in ids if rid not in by_id or not by_id[rid].learning.adapt_to_load
        ]:
            ids.discard(gone)
        return [by_id[rid] for rid in ids]

    def set_load_factor(self, resource: Resource, factor: float, now: float) -> None:
        """adapt_to_load: the share of its limit the host's load allows."""
        self._learner.set_load_factor(resource, factor, now)

    def learned_state(self, resource: Resource, wall_offset: float) -> LearnedState | None:
        """The learned limit beside the ones it learns under (None: not learning)."""
        learned = resource.learned
        if learned is None:
            return None
        configured, declared = resource.configured, resource.strictest_declared()
        paused = resource.paused_until
        return LearnedState(
            limit=learned.count,
            window=learned.window,
            configured=configured.limit.count if configured is not None else None,
            declared=declared.limit.count if declared is not None else None,
            throttles=learned.throttles,
            paused_until=paused + wall_offset if paused > -math.inf else None,
        )

    # ---- restarts and outages -----------------------------------------------------------------

    def report_grants(
        self, client: Client, request: ReportGrants, times: Sequence[float], now: float
    ) -> int:
        """A client back from an outage gives its own account of its grants in the last window
        (`times`, monotonic, one token each): it replaces what this daemon remembers of that
        client's grants, so that its local grants count and none counts twice. Only times
        within the window count, at most the limit of them (the newest). Returns how many."""
        client.last_seen = now
        resource = self._resources.get(request.resource_id, now)
        if request.limit is not None or request.window is not None:
            self._resources.declare(client.id, resource, request, now)
        resource.last_activity = now
        client.use(resource.id)
        spec, limiter = resource.spec, resource.limiter
        if spec is None or limiter is None:
            return 0
        resource.trim(now, limiter.window)
        counted = sorted(min(t, now) for t in times if t > now - limiter.window)[-limiter.limit :]
        others = [grant for grant in resource.history if grant[2] != client.id]
        mine = [(t, 1, client.id) for t in counted]
        resource.set_history(heapq.merge(others, mine))
        self._admission.requeue(resource, now)
        return len(counted)

    def saved_grants(self, now: float) -> list[tuple[str, float, Grants]]:
        """What a restart must not forget, per limited resource: its window and its grants
        still within it (monotonic times, oldest first; the newest up to the limit)."""
        saved = []
        for resource in self._resources.by_id.values():
            limiter = resource.limiter
            if limiter is None or not resource.history:
                continue
            resource.trim(now, limiter.window)
            newest = resource.newest(limiter.limit)
            if newest:
                saved.append((resource.id, limiter.window, newest))
        return saved

    def restore_grants(
        self, resource_id: str, window: float, grants: Sequence[tuple[float, int, str]], now: float
    ) -> None:
        """Grants an earlier daemon made (monotonic times, oldest first) count here as if made
        here: those still within `window` join the history (and the limiter, once the
        resource has a limit). A bad resource id raises CoordinatorError."""
        resource = self._resources.get(resource_id, now)
        recent = sorted(g for g in grants if now - window < g[0] <= now and g[1] >= 1)
        resource.set_history(heapq.merge(resource.history, recent))

    # ---- protocol 2.0: schedules, executions, state -------------------------------------------

    def register_schedule(self, client: Client, request: RegisterSchedule, now: float) -> None:
        schedule = request.schedule
        if schedule.type == "count" and schedule.count is None:
            raise CoordinatorError("schedule.count: a count schedule needs count")
        if schedule.type == "duration" and schedule.duration is None:
            raise CoordinatorError("schedule.duration: a duration schedule needs duration")
        resource = self._resources.get(request.resource_id, now)
        resource.last_activity = client.last_seen = now
        use = client.use(resource.id)
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
        resources = [self._resources.get(r.resource_id, now) for r in records]
        client.last_seen = now
        for resource, record in zip(resources, records, strict=True):
            resource.executions += 1
            resource.last_activity = now
            use = client.use(resource.id)
            use.executions += 1
            end = record.start_time + record.duration
            use.last_execution = max(use.last_execution or end, end)

    def resource_state(
        self, resource_id: str | None, now: float, wall_offset: float
    ) -> list[SharedResource]:
        """Protocol 2.0's SharedResource for one resource or all; `wall_offset` turns monotonic
        times into Unix seconds."""
        by_id = self._resources.by_id
        if resource_id is not None:
            chosen = [by_id[resource_id]] if resource_id in by_id else []
        else:
            chosen = [by_id[k] for k in sorted(by_id)]
        return [self._state(resource, now, wall_offset) for resource in chosen]

    def _state(self, resource: Resource, now: float, wall_offset: float) -> SharedResource:
        clients: dict[str, ClientState] = {}
        by_tool: dict[str, int] = {}
        for client in self._registry.clients.values():
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
        return SharedResource(
            id=resource.id,
            type=resource_type(resource.id),
            rate_limit=self._limit_state(resource, now, now + wall_offset),
            active_clients=clients,
            clients_by_tool=by_tool,
            total_executions=resource.executions,
            tokens_granted=resource.tokens,
            last_activity=resource.last_activity + wall_offset,
        )

    def _limit_state(
        self, resource: Resource, now: float, wall_now: float
    ) -> RateLimitState | None:
        limiter, spec = resource.limiter, resource.spec
        if limiter is None or spec is None:
            return None
        bookings = self._ledger.prune(resource, wall_now)
        return RateLimitState(
            limit=limiter.limit,
            window=limiter.window,
            algorithm=limiter.algorithm,
            source=spec.source,
            remaining=max(0, limiter.remaining(now) - bookings.counting(wall_now, limiter.window)),
            waiting=sum(len(q) for q in resource.queue.values()) + bookings.sleeping(),
            booked=len(bookings),
            learned=self.learned_state(resource, wall_now - now),
        )

    # ---- protocol 1.0 (patience.daemon.ledger) ------------------------------------------------

    def schedule_v1(
        self, client: Client, request: ScheduleRequest, now: float, wall_now: float
    ) -> Answer:
        """Decide a Go client's plan and book it."""
        return self._ledger.schedule(client, request, now, wall_now)

    def register_v1(
        self, client: Client, requests: Sequence[RegisteredRequest], now: float, wall_now: float
    ) -> None:
        """Register a Go client's attempts (confirming its plan's booking)."""
        self._ledger.register(client, requests, now, wall_now)

    # ---- clean-up -----------------------------------------------------------------------------

    def expire(self, now: float, wall_now: float) -> None:
        """Forget clients idle for longer than client_ttl (their declared limits go with them),
        expired bookings and idle resources with nothing to remember. A pass does about SWEEP
        steps (a client, one of its resources, a resource), the rest waits for the next:
        resources are looked at in rounds, a slice per pass."""
        budget = self._registry.expire(now, SWEEP)
        sweep = self._sweep
        if sweep is None:
            clients = list(self._registry.clients.values())
            sweep = self._sweep = _Sweep(clients, list(self._resources.by_id), now)
        while sweep.clients and budget > 0:
            uses = sweep.clients.pop().uses
            sweep.in_use.update(uses)
            budget -= 1 + len(uses)
        by_id = self._resources.by_id
        while sweep.resources and budget > 0:
            resource = by_id.get(sweep.resources.pop())
            budget -= 1
            if resource is not None and self._forgettable(resource, sweep, now, wall_now):
                del by_id[resource.id]
        if not (sweep.clients or sweep.resources):
            self._sweep = None

    def _forgettable(self, resource: Resource, sweep: _Sweep, now: float, wall_now: float) -> bool:
        """Nothing to remember: nobody waits, books, declares or uses it (a resource gets a use
        only along with activity, so one active since the round began may have a use the round
        did not see), no activity within client_ttl, and a full limiter."""
        self._ledger.prune(resource, wall_now)
        if (
            resource.queue
            or resource.bookings
            or resource.declared
            or resource.id in sweep.in_use
            or now - resource.last_activity <= self._registry.client_ttl
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
