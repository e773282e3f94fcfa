"""Rate-limit usage counters, per resource and tool, for the `rate_limit_usage` query: the
daemon flushes them to the metrics store every few seconds and before answering that query."""

from __future__ import annotations

__all__ = ["Usage"]


class Usage:
    """Per (resource id, tool): tokens granted, requests denied, waits, and the wait total."""

    __slots__ = ("counters",)

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str], list[float]] = {}

    def count(
        self,
        resource_id: str,
        tool: str,
        granted: int = 0,
        denied: int = 0,
        waited: float = -1.0,
    ) -> None:
        """`waited` < 0: the request did not wait."""
        key = (resource_id, tool or "unknown")
        counters = self.counters.get(key)
        if counters is None:
            counters = self.counters[key] = [0, 0, 0, 0.0]
        counters[0] += granted
        counters[1] += denied
        if waited >= 0:
            counters[2] += 1
            counters[3] += waited

    def take(self) -> dict[tuple[str, str], list[float]]:
        """The counters since the last take."""
        counters, self.counters = self.counters, {}
        return counters
