"""Protocol 1.0 as bookings: how the Go `patience diophantine --daemon` is held to a limit.

The Go client asks once. On a yes it runs at once; on a no it sleeps until `wait_until` and
then runs without asking again; it registers its attempts only if that all took under five
seconds, and then with its original, whole-second request time (see
shared/reference/patience-v1-wire-protocol.md). So every answer is a booking made when it is
given: a yes books the planned attempts from the moment the request was received, a no books
them from the `wait_until` it answers, so the next refused client is given the next free slot.
A register that follows on the same connection confirms the booking and is not counted again.

Times are Unix seconds. A plan starts at the later of its request time and the daemon's own
receive time, so a request time truncated to the second never makes a window short.
"""

from __future__ import annotations

import heapq
import math

from patience.ratelimit.algorithms import RateLimitError
from patience.ratelimit.schedule_check import check_schedule

__all__ = ["Answer", "Bookings", "decide"]


class Answer:
    """A decision on one plan: `fits` (the reply's can_schedule), `start` (the time the plan
    starts: `wait_until` on a refusal), `times` (the attempts booked), and `never` (the whole
    plan can never fit, so only its first attempt was booked); `limit` per `window` seconds is
    the limit it was decided by."""

    __slots__ = ("fits", "limit", "never", "start", "times", "window")

    def __init__(
        self, fits: bool, start: float, times: list[float], never: bool, limit: int, window: float
    ) -> None:
        self.fits = fits
        self.start = start
        self.times = times
        self.never = never
        self.limit = limit
        self.window = window


class Bookings:
    """One resource's booked attempts, each counting until its expiry, and the refused
    clients still asleep until their slot."""

    __slots__ = ("_booked", "_sleepers")

    def __init__(self) -> None:
        self._booked: list[tuple[float, float]] = []  # heap of (expires, time)
        self._sleepers: list[float] = []  # heap of the wake-up times of refused clients

    def __len__(self) -> int:
        return len(self._booked)

    def prune(self, wall_now: float) -> None:
        booked, sleepers = self._booked, self._sleepers
        while booked and booked[0][0] <= wall_now:
            heapq.heappop(booked)
        while sleepers and sleepers[0] <= wall_now:
            heapq.heappop(sleepers)

    def times(self) -> list[float]:
        return [at for _, at in self._booked]

    def add(self, times: list[float], expires: list[float]) -> None:
        for at, end in zip(times, expires, strict=True):
            heapq.heappush(self._booked, (end, at))

    def sleep_until(self, wake: float) -> None:
        heapq.heappush(self._sleepers, wake)

    def sleeping(self) -> int:
        """Refused clients not yet woken (after `prune`)."""
        return len(self._sleepers)

    def counting(self, wall_now: float, window: float) -> int:
        """Booked attempts in the window that ends now: what a new attempt now competes with."""
        return sum(1 for _, at in self._booked if wall_now - window < at <= wall_now)


def decide(
    booked: list[float],
    request_time: float,
    offsets_ms: list[int],
    limit: int,
    window: float,
    wall_now: float,
) -> Answer:
    """Where a plan of attempts at start + offset fits beside the booked times.

    A fitting plan starts at once. Otherwise it starts at the earliest time it fits, rounded up
    to the millisecond (what `wait_until` can say). A plan whose own attempts overfill one
    window can never fit: only its first attempt is placed, and the answer is a refusal that
    still carries the earliest time that attempt fits (the Go client runs then regardless).
    """
    base = max(float(request_time), wall_now)
    first = min(offsets_ms)
    offsets = sorted(offsets_ms)
    never = False
    try:
        shift = check_schedule(booked, _plan(base, offsets), limit, window)
    except RateLimitError:
        never, offsets = True, [first]
        shift = check_schedule(booked, _plan(base, offsets), limit, window)
    if shift == 0.0:
        return Answer(not never, base, _plan(base, offsets), never, limit, window)
    millis = math.ceil((base + shift) * 1000)
    while (more := check_schedule(booked, _plan(millis / 1000, offsets), limit, window)) > 0:
        millis += max(1, math.ceil(more * 1000))  # float rounding put it a hair early
    start = millis / 1000
    return Answer(False, start, _plan(start, offsets), never, limit, window)


def _plan(start: float, offsets_ms: list[int]) -> list[float]:
    return [start + offset / 1000 for offset in offsets_ms]
