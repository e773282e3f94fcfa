"""Learned limits: the rate a server really takes, found from its throttle signals.

The control law (docs/adaptive-limits.md), per resource, counted in tokens per window of the
limit it learns under (the configured or declared limit's window; 1s for a resource that had
none):

- **Throttle** (a client reported a 429, a Retry-After, ...): the rate the server refused at,
  `bad`, is the grants of the last window (or the learned value, if lower); the learned value
  becomes `max(floor, bad x decrease)` (multiplicative decrease). Signals within one window of
  a decrease are the same episode (every client in flight hears the same "stop"): they are
  counted, they decrease nothing more.
- **Clean window** (a whole window without a throttle signal, in which the demand reached
  the learned limit: grants within 10% of it, or requests queued or refused; a window of no
  demand says nothing about the server): below `bad - increase` the value climbs half the
  way there, at least `increase` (the way back to the last good rate is quick: it was good
  a moment ago); there it stays for PLATEAU clean windows, twice as many when the refusal
  was at the same ceiling as the last (within 15% or two `increase`: arrival times jitter;
  at most MAX_PLATEAU); then it probes upward, `increase` first and twice the last step
  each clean window after (at most half the value), until the server throttles again. So
  the learned limit settles just under the server's limit, and finds a raised one in a few
  windows.
- **Bounds**: never above `ceiling` (the configured limit; None: no ceiling, probing upward
  from the declared one), never below `floor`, always a whole number of tokens >= 1.

A resource that had no limit starts at its first throttle from the floor, with no `bad`: it
probes (doubling) until the server says stop, as TCP's slow start does.

A server that says when to come back (Retry-After) pauses the resource: `Paused` wraps its
limiter so that nothing is granted before then, whoever asks.

Pure: every method takes the time (seconds on any monotonic clock); nothing here sleeps.
"""

from __future__ import annotations

from patience.ratelimit.algorithms import Decision, Limiter
from patience.settings import MAX_LIMIT

__all__ = ["MAX_PLATEAU", "PLATEAU", "LearnedLimit", "Learning", "LearningError", "Paused"]

PLATEAU = 5  # clean windows spent at the last good rate before probing beyond it ...
MAX_PLATEAU = 2 * PLATEAU  # ... doubled when a probe finds the same ceiling, up to this
SAME_CEILING = 0.15  # a refusal this close to the last one (or within 2 x increase) is the same


class LearningError(ValueError):
    """A learning setting out of its range; the message names the fix."""


class Learning:
    """How a resource's limit learns (`[rate_limiting.resources]`): `adaptive` (None: the
    default, on for a resource without a configured limit, off for one with),
    `decrease` (0 < d < 1), `increase` (tokens added per clean window, > 0), `floor` (the
    least limit, >= 1), `adapt_to_load` (scale down while the host is above target load);
    and, for the tools, what else counts as a throttle signal: `throttle_pattern` (a regular
    expression the output matches) and `throttle_exit` (an exit code)."""

    __slots__ = (
        "adapt_to_load",
        "adaptive",
        "decrease",
        "floor",
        "increase",
        "throttle_exit",
        "throttle_pattern",
    )

    def __init__(
        self,
        adaptive: bool | None = None,
        decrease: float = 0.5,
        increase: float = 1.0,
        floor: int = 1,
        adapt_to_load: bool = False,
        throttle_pattern: str | None = None,
        throttle_exit: int | None = None,
    ) -> None:
        if not 0.0 < decrease < 1.0:
            raise LearningError(f"decrease {decrease} is not between 0 and 1 (try 0.5)")
        if not 0.0 < increase <= MAX_LIMIT:
            raise LearningError(f"increase {increase} is not a positive number (try 1)")
        if isinstance(floor, bool) or not 1 <= floor <= MAX_LIMIT:
            raise LearningError(f"floor {floor} is not a whole number from 1 (try 1)")
        self.adaptive = adaptive
        self.decrease = decrease
        self.increase = increase
        self.floor = floor
        self.adapt_to_load = adapt_to_load
        self.throttle_pattern = throttle_pattern
        self.throttle_exit = throttle_exit

    def enabled(self, configured: bool) -> bool:
        """Whether the limit learns, for a resource with (or without) a configured limit."""
        return self.adaptive if self.adaptive is not None else not configured

    def _key(self) -> tuple[object, ...]:
        return (
            self.adaptive,
            self.decrease,
            self.increase,
            self.floor,
            self.adapt_to_load,
            self.throttle_pattern,
            self.throttle_exit,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Learning) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "Learning({}, {}, {}, {}, {}, {!r}, {})".format(*self._key())


class LearnedLimit:
    """One resource's learned limit under the control law above. `value` is a float so that
    small increases add up; `count` is the whole limit in force."""

    __slots__ = (
        "bad",
        "ceiling",
        "decreased_at",
        "hold",
        "last_bad",
        "plateau",
        "settings",
        "step",
        "throttles",
        "value",
        "window",
        "window_start",
    )

    def __init__(
        self,
        settings: Learning,
        window: float,
        ceiling: int | None,
        now: float,
        value: float | None = None,
    ) -> None:
        self.settings = settings
        self.window = window
        self.ceiling = ceiling
        self.value = float(settings.floor if value is None else value)
        self.bad: float | None = None  # the rate the server last refused at
        self.step = settings.increase  # the next probe's increase
        self.plateau = 0  # clean windows still to spend at the last good rate
        self.hold = PLATEAU  # the plateau's length after the next throttle
        self.last_bad: float | None = None  # the previous episode's bad, probing or not
        self.decreased_at = -float("inf")
        self.window_start = now
        self.throttles = 0  # signals heard, episodes or not
        self._bound()

    @property
    def count(self) -> int:
        """The learned limit, in whole tokens per window."""
        return max(1, int(self.value))

    def throttled(self, now: float, observed: float | None) -> bool:
        """A throttle signal at `now`; `observed` is the grants of the last window (None:
        unknown). True when it decreased the limit (the first of its episode)."""
        self.throttles += 1
        self.window_start = max(self.window_start, now)  # the window in progress is not clean
        if now < self.decreased_at + self.window:
            return False
        bad = self.value if observed is None else min(self.value, max(observed, 1.0))
        last = self.last_bad
        near = max(2 * self.settings.increase, SAME_CEILING * (last or 0.0))
        same = last is not None and abs(bad - last) <= near
        self.hold = min(self.hold * 2, MAX_PLATEAU) if same else PLATEAU
        self.bad = self.last_bad = bad
        self.value = bad * self.settings.decrease
        self.step = self.settings.increase
        self.plateau = self.hold
        self.decreased_at = now
        self._bound()
        return True

    def tick(self, now: float, used: float) -> bool:
        """Called often (at least once a window): when a whole window has passed since the
        last one ended, judge it (`used`: the grants of the last window). True when the
        limit changed."""
        if now < self.window_start + self.window:
            return False
        self.window_start = now
        if used < max(1.0, min(self.count - 1.0, 0.9 * self.count)):  # no demand at the
            return False  # limit: nothing learned
        before = self.count
        self._clean()
        self._bound()
        return self.count != before

    def _clean(self) -> None:
        increase = self.settings.increase
        target = None if self.bad is None else self.bad - increase
        if target is not None and self.value < target:
            self.value = min(target, self.value + max(increase, (target - self.value) / 2))
        elif target is not None and self.plateau > 0:
            self.plateau -= 1
        else:
            self.value += self.step
            self.step = min(self.step * 2, max(increase, self.value / 2))
            self.bad = None  # probing past it: the old refusal is out of date

    def _bound(self) -> None:
        floor, ceiling = self.settings.floor, self.ceiling
        top = float(MAX_LIMIT if ceiling is None else max(ceiling, 1))
        self.value = min(max(self.value, float(min(floor, top))), top)

    def rebase(self, window: float, ceiling: int | None) -> None:
        """The limit it learns under changed (a reload, another declared limit)."""
        self.window = window
        self.ceiling = ceiling
        self._bound()

    def to_state(self) -> dict[str, float | int | None]:
        """What a restart or another host needs to carry on (times are not kept: a
        restarted daemon starts a fresh window and a fresh episode)."""
        return {
            "value": self.value,
            "bad": self.bad,
            "step": self.step,
            "plateau": self.plateau,
            "hold": self.hold,
        }

    def restore(self, state: dict[str, float | int | None]) -> None:
        """Carry on from `to_state` (unknown or bad fields keep their value)."""
        value, bad, step, plateau, hold = (
            state.get(k) for k in ("value", "bad", "step", "plateau", "hold")
        )
        if isinstance(value, int | float) and value >= 1:
            self.value = float(value)
        if bad is None or (isinstance(bad, int | float) and bad >= 1):
            self.bad = None if bad is None else float(bad)
        if isinstance(step, int | float) and step > 0:
            self.step = float(step)
        if isinstance(plateau, int) and 0 <= plateau <= MAX_PLATEAU:
            self.plateau = plateau
        if isinstance(hold, int) and PLATEAU <= hold <= MAX_PLATEAU:
            self.hold = hold
        self._bound()


class Paused(Limiter):
    """`inner`, except that nothing is admitted before `until`: the refusal says to come back
    then (or later, if `inner` says so). The numbers (limit, window, algorithm) are inner's."""

    def __init__(self, inner: Limiter, until: float) -> None:
        super().__init__(inner.limit, inner.window)
        self.algorithm = inner.algorithm
        self.inner = inner
        self.until = until

    def acquire(self, now: float, tokens: int = 1) -> Decision:
        if now >= self.until:
            return self.inner.acquire(now, tokens)
        wait = self.available_at(now, tokens) - now
        reset = max(wait, self.inner.available_at(now, self.limit) - now)
        return Decision(False, 0, self.limit, wait, reset)

    def available_at(self, now: float, tokens: int = 1) -> float:
        return self.inner.available_at(max(now, self.until), tokens)

    def remaining(self, now: float) -> int:
        return self.inner.remaining(now) if now >= self.until else 0
