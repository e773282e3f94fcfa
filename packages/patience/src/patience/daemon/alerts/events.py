"""What clients report about a resource, kept for the rules' windows: throttle feedback
(`record` is what the `feedback` message will call) and reports of grants made on a
fallback. Bounded: the newest MAX_EVENTS, none older than `keep` seconds."""

from __future__ import annotations

from collections import deque

from patience.daemon.alerts.snapshot import Event

__all__ = ["MAX_EVENTS", "EventLog"]

MAX_EVENTS = 100_000


class EventLog:
    def __init__(self, keep: float, capacity: int = MAX_EVENTS) -> None:
        self.keep = keep
        self._events: deque[Event] = deque(maxlen=capacity)

    def record(self, resource: str, tool: str, client: str, at: float) -> None:
        """One event at Unix time `at` (events come in time order)."""
        self._events.append(Event(at, resource, tool, client))

    def recent(self, now: float) -> list[Event]:
        """The events of the last `keep` seconds, oldest first (older ones are forgotten)."""
        events = self._events
        while events and events[0].at < now - self.keep:
            events.popleft()
        return list(events)
