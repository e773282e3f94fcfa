"""The rate limiters: pure state machines that take the time as a parameter.

One set of algorithms serves the daemon, the tools' local fallback and `rpr rate-limit`,
so a limit means the same thing everywhere. Times are float seconds on whatever clock the
caller uses (the daemon and the tools use the monotonic clock); a clock that goes backwards
is treated as standing still, so no input can break a limiter's guarantee.

Each `acquire` is atomic per limiter object (a lock), so a tool's background thread and its
run loop may share one. Every refusal says exactly when the request would be admitted:
`acquire(available_at(now))` succeeds if nothing else was admitted in between.
"""

from __future__ import annotations

from _thread import allocate_lock

from patience.settings import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    DIOPHANTINE,
    MAX_LIMIT,
    MAX_WINDOW,
    MIN_WINDOW,
    Limit,
    RateLimitError,
    algorithm_name,
    check_limit,
)

__all__ = [
    "ALGORITHMS",
    "DEFAULT_ALGORITHM",
    "GCRA",
    "MAX_LIMIT",
    "MAX_WINDOW",
    "MIN_WINDOW",
    "Decision",
    "FixedWindow",
    "Limiter",
    "RateLimitError",
    "SlidingWindowLog",
    "check_limit",
    "limiter_for",
    "make_limiter",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
else:  # `collections` costs ~2 ms to import; its deque lives in the builtin `_collections`.
    from _collections import deque


class Decision:
    """The answer to one acquisition.

    `retry_after`: seconds from now until the request would be admitted (0 when granted).
    `reset_after`: seconds until the limiter is back to full capacity.
    """

    __slots__ = ("granted", "limit", "remaining", "reset_after", "retry_after")

    def __init__(
        self, granted: bool, remaining: int, limit: int, retry_after: float, reset_after: float
    ) -> None:
        self.granted = granted
        self.remaining = remaining
        self.limit = limit
        self.retry_after = retry_after
        self.reset_after = reset_after

    def __repr__(self) -> str:
        return (
            f"Decision(granted={self.granted}, remaining={self.remaining}, limit={self.limit}, "
            f"retry_after={self.retry_after!r}, reset_after={self.reset_after!r})"
        )


class Limiter:
    """At most `limit` tokens per `window` seconds; subclasses say how windows are counted."""

    algorithm = ""

    def __init__(self, limit: int, window: float) -> None:
        check_limit(limit, window)
        self.limit = limit
        self.window = float(window)
        self._lock = allocate_lock()
        self._now = float("-inf")  # the latest time seen: the clock never runs backwards here

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    def as_limit(self) -> Limit:
        """The limit this limiter enforces, as the settings and the protocol speak of it."""
        return Limit(self.limit, self.window, self.algorithm)

    def describe(self) -> str:
        """ "10 per 1m (diophantine)": what users see in messages and status output."""
        return self.as_limit().describe()

    def acquire(self, now: float, tokens: int = 1) -> Decision:
        """Take `tokens` at `now` if they fit; a refusal changes nothing."""
        if tokens != 1:
            self._check_tokens(tokens)
        with self._lock:
            if now < self._now:
                now = self._now
            else:
                self._now = now
            return self._acquire(now, tokens)

    def available_at(self, now: float, tokens: int = 1) -> float:
        """The earliest time >= now at which `tokens` would be admitted. Changes nothing."""
        if tokens != 1:
            self._check_tokens(tokens)
        with self._lock:
            return self._available_at(max(now, self._now), tokens)

    def remaining(self, now: float) -> int:
        """How many tokens could be taken at `now`."""
        with self._lock:
            return self._remaining(max(now, self._now))

    def _check_tokens(self, tokens: int) -> None:
        if isinstance(tokens, bool) or not isinstance(tokens, int):
            raise RateLimitError(f"cannot ask for {tokens!r} tokens (ask for a whole number)")
        if tokens < 1:
            raise RateLimitError(f"cannot ask for {tokens} tokens (ask for 1 or more)")
        if tokens > self.limit:
            raise RateLimitError(
                f"{tokens} tokens at once can never fit a limit of {self.describe()}"
                f" (ask for at most {self.limit}, or raise the limit)"
            )

    def _acquire(self, now: float, tokens: int) -> Decision:
        raise NotImplementedError

    def _available_at(self, now: float, tokens: int) -> float:
        raise NotImplementedError

    def _remaining(self, now: float) -> int:
        raise NotImplementedError


class SlidingWindowLog(Limiter):
    """Exact: no half-open window [t, t + window) ever holds more than `limit` tokens.

    The log keeps the tokens still inside the window, oldest first, as runs (time, count):
    the tokens granted at one time are one run, so memory grows with the grants in a window
    (never with the tokens they take or with the limit), and expired runs leave from the left
    (amortised O(1)). This is what the Go tools call "diophantine".

    A token taken at s counts at time t while t < s + window; that one expression decides
    expiry, admission and `available_at`, so they always agree to the last bit.
    """

    algorithm = DIOPHANTINE

    def __init__(self, limit: int, window: float) -> None:
        super().__init__(limit, window)
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0  # the tokens in the log

    def _expire(self, now: float) -> None:
        log = self._log
        window = self.window
        while log and log[0][0] + window <= now:
            self._used -= log.popleft()[1]

    def _acquire(self, now: float, tokens: int) -> Decision:
        self._expire(now)
        log = self._log
        used = self._used
        if used + tokens <= self.limit:
            if log and log[-1][0] == now:
                log[-1] = (now, log[-1][1] + tokens)
            else:
                log.append((now, tokens))
            self._used = used + tokens
            return Decision(True, self.limit - used - tokens, self.limit, 0.0, self.window)
        admit_at = self._time_of(used + tokens - self.limit - 1) + self.window
        reset_at = log[-1][0] + self.window
        return Decision(False, self.limit - used, self.limit, admit_at - now, reset_at - now)

    def _available_at(self, now: float, tokens: int) -> float:
        gone = self._expired(now)
        used = self._used - gone
        if used + tokens <= self.limit:
            return now
        # The oldest (used + tokens - limit) tokens still counting must leave first.
        return self._time_of(gone + used + tokens - self.limit - 1) + self.window

    def _remaining(self, now: float) -> int:
        return self.limit - self._used + self._expired(now)

    def _expired(self, now: float) -> int:
        """How many tokens no longer count at `now`, without removing them: `now` may be a
        future time a caller asks about, and those tokens still count before it."""
        window = self.window
        gone = 0
        for at, count in self._log:
            if at + window > now:
                break
            gone += count
        return gone

    def _time_of(self, index: int) -> float:
        """When the log's token number `index` (from 0, oldest first) was taken."""
        for at, count in self._log:
            if index < count:
                return at
            index -= count
        raise IndexError(index)


class FixedWindow(Limiter):
    """One counter per aligned window [k·window, (k+1)·window): cheap, but up to twice the
    limit can pass around a window boundary. The window index is `now // window`.
    """

    algorithm = "fixed-window"

    def __init__(self, limit: int, window: float) -> None:
        super().__init__(limit, window)
        self._index = float("-inf")
        self._count = 0

    def _acquire(self, now: float, tokens: int) -> Decision:
        index = now // self.window
        if index != self._index:
            self._index = index
            self._count = 0
        end = self._window_end(index)
        count = self._count
        if count + tokens <= self.limit:
            self._count = count + tokens
            return Decision(True, self.limit - count - tokens, self.limit, 0.0, end - now)
        return Decision(False, self.limit - count, self.limit, end - now, end - now)

    def _available_at(self, now: float, tokens: int) -> float:
        index = now // self.window
        if index != self._index or self._count + tokens <= self.limit:
            return now
        return self._window_end(index)

    def _remaining(self, now: float) -> int:
        if now // self.window != self._index:
            return self.limit
        return self.limit - self._count

    def _window_end(self, index: float) -> float:
        """The first time whose window index is past `index` (rounding-proof)."""
        end = (index + 1.0) * self.window
        if end // self.window > index:
            return end
        import math

        while end // self.window <= index:
            end = math.nextafter(end, math.inf)
        return end


class GCRA(Limiter):
    """Generic cell rate algorithm: one stored time per limiter (the theoretical arrival time).

    Emission interval T = window / limit; a burst of `burst` tokens (default: the limit) may
    pass at once, then one token per T. A request for q tokens at t is admitted when
    max(tat, t) + q·T − burst·T <= t. (redis-cell's max_burst is our burst − 1.)

    Bound: any interval of length d admits fewer than burst + d/T tokens, so a window may see
    up to limit + burst − 1 tokens; the long-run rate is limit per window.

    The arithmetic is exact integers in units of 1/limit nanosecond (so T is a whole number
    of units): float sums of T would let a full burst fail by one rounding step.
    """

    algorithm = "gcra"

    def __init__(self, limit: int, window: float, burst: int | None = None) -> None:
        super().__init__(limit, window)
        if burst is None:
            burst = limit
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise RateLimitError(f"GCRA burst {burst!r} is not a positive whole number")
        self.burst = burst
        self._interval = round(self.window * 1e9)  # T, in units of 1/limit ns
        self._tolerance = self._interval * burst
        self._tat = -(1 << 126)  # long ago: the first request finds the limiter full

    def _check_tokens(self, tokens: int) -> None:
        super()._check_tokens(tokens)
        if tokens > self.burst:
            raise RateLimitError(
                f"{tokens} tokens at once can never fit a GCRA burst of {self.burst}"
                f" (ask for at most {self.burst}, or raise the burst)"
            )

    def _units(self, t: float) -> int:
        return int(t * 1e9) * self.limit

    def _acquire(self, now: float, tokens: int) -> Decision:
        tat = self._tat
        units = self._units(now)
        increment = self._interval * tokens
        if tat <= units:
            new_tat = units + increment
        elif tat - units <= self._tolerance - increment:
            new_tat = tat + increment
        else:
            retry_after = self._admit_time(tat, tokens) - now
            # Never before the retry, which float times may place a fraction of a ns later.
            reset_after = max(retry_after, (tat - units) / (self.limit * 1e9))
            return Decision(False, self._fitting(tat, units), self.limit, retry_after, reset_after)
        self._tat = new_tat
        reset_after = (new_tat - units) / (self.limit * 1e9)
        return Decision(True, self._fitting(new_tat, units), self.limit, 0.0, reset_after)

    def _available_at(self, now: float, tokens: int) -> float:
        tat = self._tat
        if tat - self._units(now) <= self._tolerance - self._interval * tokens:
            return now
        return self._admit_time(tat, tokens)

    def _remaining(self, now: float) -> int:
        return self._fitting(self._tat, self._units(now))

    def _fitting(self, tat: int, units: int) -> int:
        """How many tokens the admission test would accept at `units`, given `tat`."""
        if tat <= units:
            return self.burst
        return max(0, (self._tolerance - (tat - units)) // self._interval)

    def _admit_time(self, tat: int, tokens: int) -> float:
        """The first float time whose units pass the admission test."""
        target = tat - (self._tolerance - self._interval * tokens)
        target_ns = -(-target // self.limit)
        at = target_ns / 1e9
        if int(at * 1e9) >= target_ns:
            return at
        import math

        while int(at * 1e9) < target_ns:
            at = math.nextafter(at, math.inf)
        return at


def make_limiter(algorithm: str, limit: int, window: float) -> Limiter:
    """The limiter for an algorithm name (or alias); a bad name or limit raises
    RateLimitError."""
    return _BY_NAME[algorithm_name(algorithm)](limit, window)


def limiter_for(limit: Limit) -> Limiter:
    """The limiter that enforces `limit`, with no grant yet."""
    return _BY_NAME[limit.algorithm](limit.count, limit.window)


# Each class names its algorithm; settings.ALGORITHMS lists the same names for users.
_BY_NAME: dict[str, type[Limiter]] = {
    cls.algorithm: cls for cls in (SlidingWindowLog, FixedWindow, GCRA)
}
