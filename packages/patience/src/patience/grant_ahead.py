"""Tokens asked for ahead: the next start's token requested while the current run is in flight.

Part of the coordination (patience.daemon_gate). With `--daemon`, every start takes a token
from patience-daemon; asked for when the start is due, the round trip (and the daemon's
work) adds to every run. For a resource without a limit the gate asks for the next tokens
right after a start instead, so the answer is there when the next start is due.

Only without a limit: the daemon counts a grant at the time it makes it, and a start that
uses it later would put more starts in some window than the limit allows (two grants a
window apart, used close together). A token asked ahead that comes back with a limit (one
configured meanwhile) is not used, nor one granted before a throttle signal: the start asks
again and waits as told; so is one not used within FAST of the request. Every token asked
ahead is counted by the daemon as granted; so that none is left unused, rpr asks ahead only
for the starts it plans (`--times`), and without a known count one start ahead at most.
"""

from __future__ import annotations

import math

from patience.daemon.client import DaemonError, DaemonUnavailable

__all__ = ["FAST", "MAX_BATCH", "Ahead"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.daemon.client import DaemonClient

# Seconds: starts closer than this ask for the next tokens ahead, as many as half of this
# lasts at their pace; a token asked ahead is used within this of the request, or given up.
# So a pause or a limit the daemon sets meanwhile holds for this client at most FAST later.
FAST = 0.1
MAX_BATCH = 32  # tokens one request ahead asks for, at most (back-to-back runs)


class Ahead:
    """The tokens one gate asks for ahead on its connection (`client`), for `resource_id`.

    `left` is the starts still to come that hold no token (None: no end known); a request
    ahead asks for one token, then twice as many each time, up to MAX_BATCH, `left` and what
    half of FAST lasts at the pace of the starts, while they come faster than FAST (a slow run gains
    little from a token in hand, and would hold it long)."""

    def __init__(self, client: DaemonClient, resource_id: str, planned: int | None) -> None:
        self.client = client
        self.resource_id = resource_id
        self.left = planned
        self.batch = 1
        self.banked = 0  # tokens granted ahead and not used yet
        self.stale = False  # a throttle signal came after they were asked for
        self.last = -math.inf  # when the latest start went
        self.asked_at = -math.inf  # when the tokens in hand were asked for

    @property
    def pending(self) -> bool:
        """Whether tokens were asked for ahead (granted, or their answer not read yet)."""
        return self.banked > 0 or self.client.asked_ahead

    def take(self, now: float) -> bool:
        """Whether this start, at `now`, goes on a token asked for ahead. Reads the answer when
        it is due (raising DaemonUnavailable or DaemonError as the client does)."""
        if self.stale or now - self.asked_at > FAST:
            self.drop()
            return False
        if self.banked == 0:
            if not self.client.asked_ahead:
                return False
            grant = self.client.ahead()
            if grant is None or not grant.granted or grant.limit is not None:
                return False
            self.banked = grant.tokens
        self.banked -= 1
        return True

    def started(self, unlimited: bool, now: float, *, own: bool) -> None:
        """A start went at `now` (`own`: on a token it asked for itself, not one asked ahead);
        `unlimited`: the resource has no limit, as far as the daemon said. Asks ahead when
        the tokens in hand are used up."""
        gap, self.last = now - self.last, now
        if own and self.left is not None:
            self.left = max(self.left - 1, 0)
        if not unlimited or self.pending or self.left == 0:
            return
        if gap >= FAST:
            self.batch = 1
            return
        size = 1 if self.left is None else min(self.batch, self.left)
        if gap > 0:  # used up within half of FAST at this pace: room for slower runs
            size = max(1, min(size, int(FAST / 2 / gap)))
        try:
            self.client.acquire_ahead(self.resource_id, size)
        except DaemonUnavailable:
            return  # the next start asks the usual way, and finds out
        self.asked_at = now
        if self.left is not None:
            self.left -= size
        self.batch = min(2 * self.batch, MAX_BATCH)

    def throttled(self) -> None:
        """A run met a throttle signal: the tokens asked for before the daemon heard of it
        are not used (the next start asks afresh, and waits as told)."""
        if self.pending:
            self.stale = True

    def drop(self) -> None:
        """Give up the tokens asked for ahead (they stay counted as granted): read a pending
        answer, so that the connection can carry other requests. The next batches start
        small again: the pace they were sized by did not hold."""
        self.stale = False
        self.banked = 0
        self.batch = 1
        if self.client.asked_ahead:
            try:
                self.client.ahead()
            except (DaemonError, DaemonUnavailable):
                pass  # dropped either way
