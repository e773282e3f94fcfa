"""The resources the daemon tracks: the limit in force on each and its recent grants.

The limit in force is the configured one (by exact id, else the most specific glob, as
patience.config.resources.find_pattern decides), else the strictest one its clients declared,
else none; once the resource's limit learns from throttle signals (patience.daemon.learner),
its learned one, scaled down while the host is busy with `adapt_to_load`; and while a server
asked everyone to wait, a pause (ratelimit.learned.Paused) holds every grant.

Each limited resource keeps its recent grants: they count towards each client's
fair share, and when the limit changes a new limiter is made from them, so that grants made
just before still count against the new limit.

Times are seconds on the daemon's monotonic clock; nothing here does I/O.
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING

from patience.config.resources import ResourceLimit, find_pattern
from patience.daemon.bookings import Bookings
from patience.daemon.errors import CoordinatorError
from patience.daemon.protocol import Acquire, ReportGrants
from patience.ratelimit.algorithms import Limiter, limiter_for
from patience.ratelimit.learned import LearnedLimit, Learning, Paused
from patience.ratelimit.resources import validate_resource_id
from patience.settings import DEFAULT_ALGORITHM, Limit, RateLimitError

if TYPE_CHECKING:
    from patience.daemon.admission import Waiter

__all__ = ["GRACE", "MAX_RESOURCES", "LimitSpec", "Resource", "Resources", "resource_type"]

MAX_RESOURCES = 100_000
HISTORY = 65_536  # recent grants kept per resource: fair-share counts, replay into a new limiter
GRACE = 0.02  # seconds a client over its fair share waits for others (at most one token's time)

Grant = tuple[float, int, str]  # (time, tokens, client id)


class LimitSpec:
    """A limit on a resource (settings.Limit) and where it comes from: `config:<pattern>`
    or `client:<id>`."""

    __slots__ = ("limit", "source")

    def __init__(self, limit: Limit, source: str) -> None:
        self.limit = limit
        self.source = source

    @classmethod
    def declared(cls, count: int, window: float, algorithm: str, client_id: str) -> LimitSpec:
        """The limit a client's request declares; one no limiter takes is the client's error."""
        try:
            return cls(Limit(count, window, algorithm), f"client:{client_id}")
        except RateLimitError as exc:
            raise CoordinatorError(f"algorithm: {exc}") from None

    def same_as(self, other: LimitSpec | None) -> bool:
        return other is not None and self.limit == other.limit


class Resource:
    """One resource's state. Its queue of waiting requests (client id -> its waiters, in
    round-robin order), `ready_at`, `pending` and `grace` are patience.daemon.admission's."""

    __slots__ = (
        "asked",
        "bookings",
        "configured",
        "declared",
        "executions",
        "fleet_daemons",
        "grace",
        "held",
        "history",
        "id",
        "last_activity",
        "learned",
        "learning",
        "limiter",
        "load_factor",
        "paused_until",
        "pending",
        "queue",
        "ready_at",
        "refused",
        "shares",
        "shares_at",
        "spec",
        "tokens",
    )

    def __init__(
        self,
        resource_id: str,
        configured: LimitSpec | None,
        now: float,
        learning: Learning | None = None,
    ) -> None:
        self.id = resource_id
        self.configured = configured
        self.learning = learning or Learning()
        self.learned: LearnedLimit | None = None  # patience.daemon.learner's
        self.load_factor = 1.0  # adapt_to_load: the share of the limit the host's load allows
        self.fleet_daemons = 1  # Redis unreachable: the limit is shared by so many (fleet_share)
        self.paused_until = -math.inf  # no grant before (a server said wait)
        self.declared: dict[str, LimitSpec] = {}
        self.spec: LimitSpec | None = None
        self.limiter: Limiter | None = None
        self.history: deque[Grant] = deque()
        self.held: dict[str, int] = {}  # tokens each client holds in the current window
        self.asked: dict[str, float] = {}  # when each client last asked (for the shares)
        self.shares: dict[str, int] = {}  # each client's share, worked out at shares_at
        self.shares_at = -math.inf
        self.grace = 0.0
        self.queue: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self.ready_at = math.inf  # when the head of the queue may be served
        self.pending: list[Waiter] | None = None  # remote: the batch of waiters being decided
        self.bookings = Bookings()  # protocol 1.0: the Go clients' booked attempts
        self.tokens = 0
        self.refused = 0  # requests refused (demand the limit held back)
        self.executions = 0
        self.last_activity = now

    def record(self, now: float, tokens: int, client_id: str) -> None:
        """A grant under the limit: it counts towards the client's share."""
        history = self.history
        if len(history) >= HISTORY:
            self._drop_oldest()
        history.append((now, tokens, client_id))
        self.held[client_id] = self.held.get(client_id, 0) + tokens

    def trim(self, now: float, window: float) -> None:
        """Grants older than the window no longer count towards anyone's share."""
        history = self.history
        while history and history[0][0] + window <= now:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, tokens, client_id = self.history.popleft()
        left = self.held[client_id] - tokens
        if left:
            self.held[client_id] = left
        else:
            del self.held[client_id]

    def set_history(self, grants: Iterable[Grant]) -> None:
        """Replace the recent grants (oldest first): the shares held and the limiter are made
        again from them."""
        self.history = deque(grants)
        while len(self.history) > HISTORY:
            self.history.popleft()
        self.held = {}
        for _, tokens, client_id in self.history:
            self.held[client_id] = self.held.get(client_id, 0) + tokens
        if self.spec is not None:
            self.limiter = self._paused(_replay(self.spec, self.history))

    def base_spec(self) -> LimitSpec | None:
        """The limit it would have without learning: configured, else strictest declared."""
        return self.configured or _strictest(self.declared)

    def strictest_declared(self) -> LimitSpec | None:
        return _strictest(self.declared)

    def apply_spec(self) -> None:
        """The limit in force: the configured one, else the strictest declared; the learned
        one once it learns; scaled by the host's load with adapt_to_load; divided among the
        daemons while Redis is unreachable (patience.daemon.fleet_share)."""
        spec = self.base_spec()
        learned = self.learned
        if learned is not None:
            if not self.learning.enabled(self.configured is not None):
                learned = self.learned = None
            else:
                spec = _learned_spec(spec, learned, self.configured)
        if spec is not None and self.load_factor < 1.0:
            spec = _scaled(spec, self.load_factor, self.learning.floor)
        if spec is not None and self.fleet_daemons > 1:
            spec = _divided(spec, self.fleet_daemons)
        if spec is None:
            self.spec = self.limiter = None
        elif not spec.same_as(self.spec):  # recent grants count against the new limit
            self.spec, self.limiter = spec, self._paused(_replay(spec, self.history))
            self.grace = min(GRACE, spec.limit.window / spec.limit.count)
        else:
            self.spec = spec  # same numbers, maybe another source

    def pause(self, until: float) -> None:
        """No grant before `until` (a later pause wins), for every client."""
        self.paused_until = max(self.paused_until, until)
        if self.limiter is not None:
            self.limiter = self._paused(self.limiter)

    def _paused(self, limiter: Limiter) -> Limiter:
        inner = limiter.inner if isinstance(limiter, Paused) else limiter
        return Paused(inner, self.paused_until) if self.paused_until > -math.inf else inner

    def newest(self, limit: int) -> list[Grant]:
        """The newest grants whose tokens add up to at most `limit`, oldest first."""
        return _newest(self.history, limit)


class Resources:
    """The tracked resources by id. `requeue(resource, now)` is called whenever a resource's
    limiter may have changed under its waiters."""

    def __init__(
        self,
        limits: Mapping[str, ResourceLimit],
        default_algorithm: str,
        requeue: Callable[[Resource, float], None],
    ) -> None:
        self.limits = dict(limits)  # by configured id or pattern
        self.default_algorithm = default_algorithm
        self.by_id: dict[str, Resource] = {}
        # Learned limits by resource id (patience.daemon.learner), kept while the resource
        # is idle and forgotten too: it comes back with what it learned.
        self.learned: dict[str, LearnedLimit] = {}
        self.load_adapted: set[str] = set()  # ids whose limits follow the host's load
        self._requeue = requeue

    def reload(
        self, limits: Mapping[str, ResourceLimit], default_algorithm: str, now: float
    ) -> None:
        """New configured limits; every resource's limit in force is re-evaluated."""
        self.limits = dict(limits)
        self.default_algorithm = default_algorithm
        for resource in self.by_id.values():
            entry = self._entry(resource.id)
            resource.configured = _spec_of(entry)
            resource.learning = self.learning_for(resource.id)
            if resource.learning.adapt_to_load:
                self.load_adapted.add(resource.id)
            else:
                resource.load_factor = 1.0
            self._apply(resource, now)

    def get(self, resource_id: str, now: float, checked: bool = True) -> Resource:
        """The resource's state, tracked from its first use; new 2.0 ids are checked, the Go
        tool's are taken as sent."""
        resource = self.by_id.get(resource_id)
        if resource is not None:
            return resource
        if checked:
            try:
                validate_resource_id(resource_id)
            except ValueError as exc:
                raise CoordinatorError(f"resource_id: {exc}") from None
        if len(self.by_id) >= MAX_RESOURCES:
            raise CoordinatorError(
                f"too many resources ({MAX_RESOURCES}) are tracked; retry once idle ones expire"
            )
        entry = self._entry(resource_id)
        resource = self.by_id[resource_id] = Resource(
            resource_id, _spec_of(entry), now, entry[1].learning if entry else None
        )
        resource.learned = self.learned.get(resource_id)
        if resource.learning.adapt_to_load:
            self.load_adapted.add(resource_id)
        self._apply(resource, now)
        return resource

    def declare(
        self, client_id: str, resource: Resource, request: Acquire | ReportGrants, now: float
    ) -> None:
        """The limit a 2.0 request declares (both limit and window, or neither)."""
        if request.limit is None or request.window is None:
            missing = "window" if request.window is None else "limit"
            raise CoordinatorError(f"{missing}: a declared limit needs both limit and window")
        algorithm = request.algorithm or self.default_algorithm
        spec = LimitSpec.declared(request.limit, request.window, algorithm, client_id)
        self.declare_spec(client_id, resource, spec, now)

    def declare_spec(self, client_id: str, resource: Resource, spec: LimitSpec, now: float) -> None:
        if spec.same_as(resource.declared.get(client_id)):
            return
        resource.declared[client_id] = spec
        self._apply(resource, now)

    def undeclare(self, client_id: str, resource_ids: Iterable[str], now: float) -> None:
        """A client that goes takes its declared limits with it."""
        for resource_id in resource_ids:
            resource = self.by_id.get(resource_id)
            if resource is not None and resource.declared.pop(client_id, None) is not None:
                self._apply(resource, now)

    def _entry(self, resource_id: str) -> tuple[str, ResourceLimit] | None:
        """The configured entry that decides a resource's limit, and its id or pattern."""
        pattern = find_pattern(self.limits, resource_id)
        return None if pattern is None else (pattern, self.limits[pattern])

    def learning_for(self, resource_id: str) -> Learning:
        entry = self._entry(resource_id)
        return entry[1].learning if entry else Learning()

    def _apply(self, resource: Resource, now: float) -> None:
        resource.apply_spec()
        self._requeue(resource, now)

    def relimit(self, resource: Resource, now: float) -> None:
        """The resource's learned limit, load factor or pause changed: apply it, and look at
        its waiters again."""
        self._apply(resource, now)


def _spec_of(entry: tuple[str, ResourceLimit] | None) -> LimitSpec | None:
    if entry is None or entry[1].limit is None:
        return None
    return LimitSpec(entry[1].limit, f"config:{entry[0]}")


def _learned_spec(
    base: LimitSpec | None, learned: LearnedLimit, configured: LimitSpec | None
) -> LimitSpec:
    """The learned limit in force, over the window and algorithm of the one it learns under
    (`learned:<its source>`)."""
    learned.rebase(
        base.limit.window if base is not None else learned.window,
        configured.limit.count if configured is not None else None,
    )
    algorithm = base.limit.algorithm if base is not None else DEFAULT_ALGORITHM
    source = f"learned:{base.source}" if base is not None else "learned"
    return LimitSpec(Limit(learned.count, learned.window, algorithm), source)


def _scaled(spec: LimitSpec, factor: float, floor: int) -> LimitSpec:
    """adapt_to_load: the limit times the share the host's load allows, at least the floor."""
    count = max(1, min(spec.limit.count, max(floor, int(spec.limit.count * factor))))
    return LimitSpec(Limit(count, spec.limit.window, spec.limit.algorithm), spec.source)


def _divided(spec: LimitSpec, daemons: int) -> LimitSpec:
    """The fallback share: the limit divided among the daemons, at least 1 token."""
    count = max(1, spec.limit.count // daemons)
    source = f"{spec.source}, shared by {daemons} daemons"
    return LimitSpec(Limit(count, spec.limit.window, spec.limit.algorithm), source)


def _replay(spec: LimitSpec, history: deque[Grant]) -> Limiter:
    """A limiter for `spec` that has seen the recent grants: the newest that fit within the
    limit, in order (for the sliding-window log exactly the state that decides what comes
    next; older grants can no longer refuse anything it would not)."""
    limiter = limiter_for(spec.limit)
    for at, tokens, _ in _newest(history, spec.limit.count):
        limiter.acquire(at, tokens)
    return limiter


def _newest(history: deque[Grant], limit: int) -> list[Grant]:
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
    return min(declared.values(), key=lambda s: (s.limit.count / s.limit.window, s.limit.count))


def resource_type(resource_id: str) -> str:
    """The Go tool's ResourceType, from the id's prefix (api:, database:, filesystem:,
    network:)."""
    kind = resource_id.partition(":")[0]
    return kind if kind in ("api", "database", "filesystem", "network") else "generic"
