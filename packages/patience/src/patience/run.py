"""`run(settings)`: one `patience` run from its RetrySettings, what the command line calls
once it has built them. Makes the strategy's pacing, the coordination with patience-daemon
when asked, and the retry loop; returns the exit status.
"""

from __future__ import annotations

__all__ = ["pacing_for", "run"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from patience.backoff import Strategy
    from patience.coordination import MetricsReporter
    from patience.pacing import Pacing
    from patience.ratelimit.gate import Gate
    from patience.retry import Retry
    from patience.settings import RetrySettings, StrategySettings
    from patience.throttle import ThrottleWatch


def run(settings: RetrySettings) -> int:
    """Retry the command as `settings` say. With the daemon, each attempt takes its token
    from it and is reported to it (patience.coordination)."""
    pacing = pacing_for(settings.strategy, settings.run.command)
    daemon = settings.daemon
    if daemon is None:
        return _retry(settings, pacing, None, None).run()
    from patience.coordination import coordinate

    with coordinate(daemon, settings.run.command) as coordination:
        gate, metrics, throttle = coordination.gate, coordination.metrics, coordination.throttle
        return _retry(settings, pacing, gate, metrics, throttle).run()


def _retry(
    settings: RetrySettings,
    pacing: Pacing,
    gate: Gate | None,
    metrics: MetricsReporter | None,
    throttle: ThrottleWatch | None = None,
) -> Retry:
    from patience.retry import Retry
    from patience.retry_report import Reporter

    each = settings.run
    return Retry(
        each.command,
        pacing,
        Reporter(settings.attempts, settings.quiet),
        attempts=settings.attempts,
        timeout=each.timeout,
        kill_after=each.kill_after,
        max_time=settings.max_time,
        retry_on=settings.retry_on,
        success_pattern=each.success_pattern,
        failure_pattern=each.failure_pattern,
        gate=gate,
        metrics=metrics,
        throttle=throttle,
    )


def pacing_for(strategy: StrategySettings, command: Sequence[str]) -> Pacing:
    """How the attempts are paced: a plain backoff, or one of the strategies that wrap one
    (http-aware, adaptive, which learns per `command`) or plan attempts (diophantine)."""
    from patience import pacing

    name = strategy.name
    if name == "http-aware":
        from patience.backoff import DEFAULT_MAX_DELAY

        cap = strategy.number("max_delay")
        return pacing.HttpAware(_fallback(strategy, min(DEFAULT_MAX_DELAY, cap)), cap)
    if name == "adaptive":
        from patience.learning import Memory, memory_path
        from patience.stderr import say

        path = memory_path(command)
        memory, warning = Memory.load(
            path, command, strategy.number("learning_rate"), strategy.whole("memory_window")
        )
        if warning:
            say("patience", f"adaptive: {warning}")
        return pacing.Adaptive(_fallback(strategy, strategy.number("max_delay")), memory, path)
    limit = strategy.rate()
    if limit is not None:  # diophantine
        from patience.ratelimit.algorithms import limiter_for

        return pacing.Diophantine(strategy.offsets("retry_offsets"), limiter_for(limit))
    return pacing.Backoff(strategy.strategy())


def _fallback(strategy: StrategySettings, max_delay: float) -> Strategy:
    """The backoff a wrapping strategy falls back on: --base-delay is its first delay,
    whatever its kind."""
    from patience.backoff import make_strategy

    name, base = strategy.text("fallback"), strategy.number("base_delay")
    if name == "fixed":
        return make_strategy(name, delay=base)
    if name == "linear":
        return make_strategy(name, increment=base, max_delay=max_delay)
    return make_strategy(name, base_delay=base, max_delay=max_delay)
