"""The gate a run or attempt passes before it starts: wait for a token, then go.

`LocalGate` enforces a limit inside this process with one of the shared limiter
algorithms. The daemon-backed gate (patience.coordination.DaemonGate, across processes)
takes the same place in both tools: both are a `Gate`. Waiting is interruptible: a Ctrl-C
while waiting for a token stops at once.
"""

from __future__ import annotations

import time

from patience import process

__all__ = ["LocalGate"]  # and, for type checking, Gate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Protocol

    from patience.ratelimit.algorithms import Limiter

    class Gate(Protocol):
        """What a run loop asks before each start. `wait_turn()` is False when the tool
        was interrupted or the gate closed for good; `failure` then says why it closed."""

        failure: str | None

        def wait_turn(self, until: float | None = None) -> bool: ...


class LocalGate:
    """Admit one start at a time under `limiter`, sleeping until a token is free."""

    failure: str | None = None  # a local gate never closes

    def __init__(
        self,
        limiter: Limiter,
        clock: Callable[[], float] = time.monotonic,
        sleep_until: Callable[[float], bool] = process.sleep_until,
    ) -> None:
        self.limiter = limiter
        self.clock = clock
        self.sleep_until = sleep_until

    def next_free(self) -> float:
        """When the next start would be admitted (for --show-next)."""
        return self.limiter.available_at(self.clock())

    def wait_turn(self, until: float | None = None) -> bool:
        """Block until a token is granted (True) or the tool is interrupted (False). With
        `until` (a monotonic deadline), False at once when no token comes before it."""
        while True:
            now = self.clock()
            decision = self.limiter.acquire(now)
            if decision.granted:
                return True
            retry_at = now + decision.retry_after
            if until is not None and retry_at > until:
                return False
            if not self.sleep_until(retry_at):
                return False
