"""One attempt: the step rpr's runner and patience's retry loop both take for each start.

The step starts the command through the one process runner with the tool's iteration
variable set, routes its output (straight through unless a pattern or a reader must see
it), judges it with the one pattern evaluator and sends its record to the metrics reporter.

The two loops take the outside world in their constructors, as a `Clock` and a `Spawner`,
so their logic runs in-process in tests with a fake clock and a fake spawner; the real ones
are `SystemClock` and `ProcessSpawner`.
"""

from __future__ import annotations

import os
import time

from patience import process
from patience.conditions import PatternWatch, judge
from patience.process import INHERIT, Sink

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Mapping, Sequence
    from typing import Literal, Protocol

    from patience.coordination import MetricsReporter
    from patience.process import RunResult
    from patience.throttle import ThrottleWatch

    class Clock(Protocol):
        """Time as the loops see it: `now` is monotonic (due times, durations), `wall` is
        the epoch (hints, reports); `sleep_until` is False when a signal cut it short."""

        def now(self) -> float: ...

        def wall(self) -> float: ...

        def sleep_until(self, deadline: float) -> bool: ...

    class Spawner(Protocol):
        """Starts commands. `prepare` is called once before the first start (signal
        forwarding); `interrupted` is the signal that told the tool to stop, if any."""

        def prepare(self) -> None: ...

        def interrupted(self) -> int | None: ...

        def run(
            self,
            argv: Sequence[str],
            *,
            output: str | Sink,
            timeout: float | None,
            kill_after: float,
            env: Mapping[str, str],
            watch_signals: bool,
        ) -> RunResult: ...


# and, for type checking, Clock and Spawner
__all__ = ["Attempt", "AttemptStep", "ProcessSpawner", "SystemClock"]


class SystemClock:
    """The real clocks, and the sleep a signal to the tool cuts short."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()

    def sleep_until(self, deadline: float) -> bool:
        return process.sleep_until(deadline)


class ProcessSpawner:
    """Real commands through patience.process, with our signals forwarded to them."""

    __slots__ = ()

    def prepare(self) -> None:
        process.install_signal_forwarding()

    def interrupted(self) -> int | None:
        return process.interrupted()

    def run(
        self,
        argv: Sequence[str],
        *,
        output: str | Sink,
        timeout: float | None,
        kill_after: float,
        env: Mapping[str, str],
        watch_signals: bool,
    ) -> RunResult:
        return process.run(
            argv,
            output=output,
            timeout=timeout,
            kill_after=kill_after,
            env=env,
            watch_signals=watch_signals,
        )


class Attempt:
    """One finished start as the loops, reporters, stop conditions and summaries see it
    (rpr calls it a run). `due` is when it was meant to start, on the monotonic clock."""

    __slots__ = ("due", "failure_matched", "number", "reason", "result", "success")

    def __init__(
        self,
        number: int,
        due: float,
        result: RunResult,
        success: bool,
        reason: str,
        failure_matched: bool = False,
    ) -> None:
        self.number = number
        self.due = due
        self.result = result
        self.success = success
        self.reason = reason
        self.failure_matched = failure_matched

    @property
    def lateness(self) -> float:
        return max(0.0, self.result.start - self.due)


class AttemptStep:
    """Start, judge and record one attempt; configured once per loop.

    `variable` is the environment variable that tells the command its number
    (PATIENCE_ATTEMPT, RPR_ITERATION); `numbered` is the field of the execution record it
    fills. `output` says, per start, how the command's own output is shown (inherited,
    discarded, or a sink such as rpr's --output-prefix). `throttle` (under --daemon) looks
    at each start's output head and exit for a throttle signal to report.
    """

    def __init__(
        self,
        argv: Sequence[str],
        spawner: Spawner,
        *,
        variable: str,
        numbered: Literal["attempt", "execution"],
        metrics: MetricsReporter | None = None,
        success_pattern: re.Pattern[str] | None = None,
        failure_pattern: re.Pattern[str] | None = None,
        kill_after: float = 5.0,
        output: Callable[[], str | Sink] = lambda: INHERIT,
        throttle: ThrottleWatch | None = None,
    ) -> None:
        self.argv = list(argv)
        self.spawner = spawner
        self.variable = variable
        self.numbered = numbered
        self.metrics = metrics
        self.patterns = {
            name: p
            for name, p in (("success", success_pattern), ("failure", failure_pattern))
            if p is not None
        }
        self.kill_after = kill_after
        self.output = output
        self.throttle = throttle
        # Read os.environ once: decoding it costs ~80 µs, more than a tenth of a run of `true`.
        self.environ = dict(os.environ)

    def start(
        self,
        number: int,
        due: float,
        *,
        timeout: float | None,
        inspect: Sequence[Sink] = (),
        watch_signals: bool = True,
    ) -> Attempt:
        """Run attempt `number` now; `inspect` are sinks that must see its output too.
        Raises process.SpawnError when the command cannot be started."""
        env = self.environ.copy()
        env[self.variable] = str(number)
        watch = PatternWatch(self.patterns) if self.patterns else None
        head = self.throttle.sink() if self.throttle is not None else None
        if head is not None:
            inspect = (*inspect, head)
        result = self.spawner.run(
            self.argv,
            output=self._output(watch, inspect),
            timeout=timeout,
            kill_after=self.kill_after,
            env=env,
            watch_signals=watch_signals,
        )
        matched = watch.matched if watch is not None else set()
        failed = "failure" in matched
        success, reason = judge(result, failed, "success" in matched)
        if self.throttle is not None and head is not None:
            self.throttle.judge(head, result, time.time())
        if self.metrics is not None:
            if self.numbered == "attempt":
                self.metrics.add(result, success, attempt=number)
            else:
                self.metrics.add(result, success, execution=number)
        return Attempt(number, due, result, success, reason, failed)

    def _output(self, watch: PatternWatch | None, inspect: Sequence[Sink]) -> str | Sink:
        """The command's output passes straight through unless something must see it."""
        own = self.output()
        if watch is None and not inspect:
            return own
        from patience.capture import Forward, LineScanner, Tee

        sinks: list[Sink] = []
        if isinstance(own, Sink):
            sinks.append(own)
        elif own == INHERIT:
            sinks.append(Forward())
        if watch is not None:
            sinks.append(LineScanner(watch.on_line))
        return Tee([*sinks, *inspect])
