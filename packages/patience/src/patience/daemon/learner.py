"""Throttle feedback from the tools, and the learned limits it teaches (docs/adaptive-limits.md).

A tool whose run met a throttle signal (HTTP 429, a Retry-After, ...) says so with a
`feedback` message. Then, for every client of that resource:
- the daemon pauses its grants until the time the server gave (a Retry-After), so that the
  other instances stop hammering a server that just said stop;
- its limit learns (when its `[rate_limiting.resources]` entry lets it: on by default for a
  resource without a configured limit): the control law of patience.ratelimit.learned, under
  the configured limit (its ceiling) or from the declared one, never below the floor.

The learned limits are remembered by resource id beyond the resource's own life in the
daemon (Resources.learned), so that an idle resource coming back keeps what it learned, and
the state file and the Redis backend carry them to the next daemon and to other hosts.

Pure: the clock is a parameter; nothing here does I/O.
"""

from __future__ import annotations

import math

from patience.daemon.resources import Resource, Resources
from patience.ratelimit.learned import LearnedLimit

__all__ = ["LEARN_WINDOW", "MAX_LEARNED", "MAX_PAUSE", "Learner"]

MAX_PAUSE = 3600.0  # seconds one throttle signal may pause a resource
MAX_LEARNED = 10_000  # learned limits remembered, all resources together
LEARN_WINDOW = 1.0  # the window of a limit learned where there was none


class Learner:
    def __init__(self, resources: Resources) -> None:
        self._resources = resources
        self._active: set[str] = set()  # ids learning or paused: `tick` looks at them
        self._pressed: set[str] = set()  # ids whose requests queued in the current window
        self._refused: dict[str, int] = {}  # id -> its refusals when its window began
        self.throttles = 0  # signals heard since start

    def throttled(self, resource: Resource, retry_after: float | None, now: float) -> bool:
        """A throttle signal for `resource` at `now`; `retry_after`, the seconds the server
        asked for. True when the limit decreased."""
        self.throttles += 1
        decreased = False
        if resource.learning.enabled(resource.configured is not None):
            learned = resource.learned
            if learned is None:
                learned = self._start(resource, now)
            decreased = learned.throttled(now, self._used(resource, now))
            self._remember(resource.id, learned)
        if retry_after is not None and retry_after > 0 and resource.limiter is not None:
            resource.pause(now + min(retry_after, MAX_PAUSE))
            if resource.learned is not None:  # a window without grants says nothing
                learned = resource.learned
                learned.window_start = max(learned.window_start, resource.paused_until)
        self._active.add(resource.id)
        self._pressed.discard(resource.id)  # the demand of this window is counted afresh
        self._refused[resource.id] = resource.refused
        self._resources.relimit(resource, now)
        return decreased

    def _start(self, resource: Resource, now: float) -> LearnedLimit:
        """A learned limit from the one in force (the first throttle then decreases it), or,
        where there was none, from the floor (it then probes upward until the next throttle)."""
        base = resource.base_spec()
        configured = resource.configured
        ceiling = configured.limit.count if configured is not None else None
        if base is None:
            learned = LearnedLimit(resource.learning, LEARN_WINDOW, ceiling, now)
            learned.decreased_at = now  # this signal is the episode that made it
        else:
            window, count = base.limit.window, base.limit.count
            learned = LearnedLimit(resource.learning, window, ceiling, now, value=count)
        resource.learned = learned
        return learned

    def _used(self, resource: Resource, now: float) -> float | None:
        """Tokens granted in the last window (None: not counted, no limit in force)."""
        limiter = resource.limiter
        if limiter is None:
            return None
        resource.trim(now, limiter.window)
        return float(sum(resource.held.values()))

    def _remember(self, resource_id: str, learned: LearnedLimit) -> None:
        memory = self._resources.learned
        memory.pop(resource_id, None)
        memory[resource_id] = learned  # the most recently taught last
        while len(memory) > MAX_LEARNED:
            del memory[next(iter(memory))]

    def tick(self, now: float) -> list[Resource]:
        """Judge the windows that ended (clean ones raise the limit) and end the pauses
        that are over; call often (every 0.1s or so). Returns the resources whose limit
        changed."""
        changes: list[Resource] = []
        by_id, memory = self._resources.by_id, self._resources.learned
        for resource_id in list(self._active):
            resource = by_id.get(resource_id)
            if resource is None:  # idle and forgotten: back with its learned limit, if any
                self._refused.pop(resource_id, None)
                if resource_id not in memory:
                    self._active.discard(resource_id)
                continue
            changed = False
            if resource.paused_until <= now and resource.paused_until > -math.inf:
                resource.paused_until = -math.inf
                changed = True
            learned = resource.learned
            if learned is not None:
                changed = self._judge(resource, learned, now) or changed
            elif resource.paused_until == -math.inf:
                self._active.discard(resource_id)
            if changed:
                self._resources.relimit(resource, now)
                changes.append(resource)
        return changes

    def _judge(self, resource: Resource, learned: LearnedLimit, now: float) -> bool:
        """Feed the law the window's demand: the grants of the last window, or the whole
        limit if requests queued at some point in it or were refused (the limit held them
        back; with the Redis backend this daemon's grants are only a part of the fleet's)."""
        if resource.queue or resource.refused != self._refused.get(resource.id, 0):
            self._pressed.add(resource.id)
        used = self._used(resource, now) or 0.0
        if resource.id in self._pressed:
            used = max(used, float(learned.count))
        started = learned.window_start
        changed = learned.tick(now, used)
        if learned.window_start != started:  # a window was judged: the next starts afresh
            self._pressed.discard(resource.id)
            self._refused[resource.id] = resource.refused
        return changed

    def adopt(
        self, resource_id: str, learned: LearnedLimit, now: float, pause: float | None = None
    ) -> None:
        """A learned limit from elsewhere (the state file, another host through Redis), and
        the pause it is under (monotonic), if any."""
        self._remember(resource_id, learned)
        self._active.add(resource_id)
        resource = self._resources.by_id.get(resource_id)
        if resource is None and pause is not None:
            resource = self._resources.get(resource_id, now)
        if resource is not None:
            resource.learned = learned
            if pause is not None:
                resource.pause(pause)
            self._resources.relimit(resource, now)

    def set_load_factor(self, resource: Resource, factor: float, now: float) -> None:
        """adapt_to_load: the share of the limit the host's load allows (1.0: all of it)."""
        factor = min(1.0, max(0.0, factor))
        if abs(factor - resource.load_factor) >= 0.01:
            resource.load_factor = factor
            self._resources.relimit(resource, now)
