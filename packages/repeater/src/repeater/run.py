"""One `rpr` run: its settings and `run(settings)`, what the command line calls once it has
built them.

RepeatSettings are the typed values a run is made of (each run as patience.settings's
RunSettings, shared with patience; when runs are due, when rpr stops, its --rate, the
output, the daemon's part); `run` makes the reporter, the gate (--rate here, or
patience-daemon's with --daemon) and the runner, and returns the exit status.
"""

from __future__ import annotations

__all__ = ["OUTPUTS", "OutputSettings", "RepeatSettings", "reporter_for", "run"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.coordination import MetricsReporter
    from patience.ratelimit.gate import Gate
    from patience.settings import Limit, RunSettings
    from patience.settings.daemon import DaemonSettings
    from patience.throttle import ThrottleWatch
    from repeater.http_timing import HintReader
    from repeater.output import Reporter
    from repeater.runner import Runner
    from repeater.schedules import Schedule
    from repeater.stop import StopConditions

# What rpr writes (repeater.output): the command's output with a summary, nothing but
# errors, a line per run besides, only the summary, JSON objects.
OUTPUTS = ("stream", "quiet", "verbose", "stats_only", "json")


class OutputSettings:
    """One of OUTPUTS; `prefix` before each line of the command's output, `progress` a live
    status line, `total` the runs planned (--times), for that line."""

    __slots__ = ("kind", "prefix", "progress", "total")

    def __init__(
        self,
        kind: str = "stream",
        *,
        prefix: str | None = None,
        progress: bool = False,
        total: int | None = None,
    ) -> None:
        if kind not in OUTPUTS:
            raise ValueError(f'output "{kind}" is none of {", ".join(OUTPUTS)}')
        self.kind = kind
        self.prefix = prefix
        self.progress = progress
        self.total = total


class RepeatSettings:
    """One `rpr` run: each run as `run` says, started when `schedule` says, up to `parallel`
    at once, until `stop`; within `rate` (None: no limit of its own); `hints` reads a
    server's retry hint from each run's output (--http-aware; None without); `daemon`
    coordinates the runs (None: no daemon)."""

    __slots__ = ("daemon", "hints", "output", "parallel", "rate", "run", "schedule", "stop")

    def __init__(
        self,
        run: RunSettings,
        schedule: Schedule,
        stop: StopConditions,
        *,
        output: OutputSettings | None = None,
        rate: Limit | None = None,
        parallel: int = 1,
        hints: HintReader | None = None,
        daemon: DaemonSettings | None = None,
    ) -> None:
        if isinstance(parallel, bool) or not 1 <= parallel <= 1024:
            raise ValueError(f"--parallel {parallel!r} is not within 1..1024")
        if parallel > 1 and hints is not None:
            raise ValueError(
                "--http-aware waits for each run's output; it cannot be combined with --parallel"
            )
        if parallel > 1 and schedule.sequential:
            raise ValueError("--parallel needs a fixed schedule, and this one waits for each run")
        self.run = run
        self.schedule = schedule
        self.stop = stop
        self.output = output or OutputSettings()
        self.rate = rate
        self.parallel = parallel
        self.hints = hints
        self.daemon = daemon


def run(settings: RepeatSettings) -> int:
    """Repeat the command as `settings` say. With the daemon, each run takes its token from
    it (a --rate is declared to it, so the limit holds across every instance) and is
    reported to its metrics store (patience.coordination)."""
    daemon = settings.daemon
    if daemon is None:
        return _runner(settings, _local_gate(settings), None).run()
    from patience.coordination import coordinate

    with coordinate(daemon, settings.run.command) as coordination:
        gate, metrics, throttle = coordination.gate, coordination.metrics, coordination.throttle
        return _runner(settings, gate, metrics, throttle).run()


def _local_gate(settings: RepeatSettings) -> Gate | None:
    """--rate without the daemon: kept here, exactly."""
    if settings.rate is None:
        return None
    from patience.ratelimit.algorithms import limiter_for
    from patience.ratelimit.gate import LocalGate

    return LocalGate(limiter_for(settings.rate))


def _runner(
    settings: RepeatSettings,
    gate: Gate | None,
    metrics: MetricsReporter | None,
    throttle: ThrottleWatch | None = None,
) -> Runner:
    from repeater.runner import Runner

    each = settings.run
    return Runner(
        each.command,
        settings.schedule,
        settings.stop,
        reporter_for(settings.output),
        success_pattern=each.success_pattern,
        failure_pattern=each.failure_pattern,
        timeout=each.timeout,
        kill_after=each.kill_after,
        parallel=settings.parallel,
        gate=gate,
        hints=settings.hints,
        metrics=metrics,
        throttle=throttle,
    )


def reporter_for(output: OutputSettings) -> Reporter:
    """The reporter that writes what `output` says."""
    from repeater import output as kinds

    reporter: Reporter
    if output.kind == "stats_only":
        reporter = kinds.StatsOnlyReporter()
    elif output.kind == "json":
        reporter = kinds.JsonReporter()
    elif output.kind == "quiet":
        reporter = kinds.QuietReporter()
    elif output.kind == "verbose":
        reporter = kinds.VerboseReporter(prefix=output.prefix)
    else:
        reporter = kinds.Reporter(prefix=output.prefix)
    reporter.progress = output.progress and kinds.status_line_possible()
    reporter.total = output.total
    return reporter
