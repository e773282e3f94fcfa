"""`rpr`: the command line. Thin: parse, validate, build a schedule and a runner, run.

Grammar: rpr [--config FILE] SUBCOMMAND [options] -- COMMAND [ARGS...]
Each subcommand (mode) is one entry of MODES: its aliases, its own options and how it
builds its schedule. Every mode also takes the common options (stop conditions, timing,
patterns, output).
"""

from __future__ import annotations

import sys

from patience.backoff import DECLARATIONS
from patience.cliparse import (
    Option,
    Parsed,
    UsageError,
    asks_help,
    load_config,
    parse,
    parse_choice,
    parse_global,
    parse_int,
    render_options,
    require_command,
    unknown_choice,
)
from patience.daemon_options import DAEMON_OPTIONS
from patience.durations import offset_list, parse_duration, positive_duration
from patience.exits import ExitStatus
from patience.numbers import decimal
from patience.settings import Limit
from patience.stderr import say
from repeater import __version__
from repeater.advanced_modes import (
    ADAPTIVE_OPTIONS,
    ADAPTIVE_RULE,
    BACKOFF_MODES,
    BACKOFF_RULE,
    CRON_NOTES,
    CRON_OPTIONS,
    HTTP_OPTIONS,
    LOAD_OPTIONS,
    LOAD_RULE,
    SHOW_NEXT_OPTION,
    UNTIL_OPTIONS,
    backoff_builder,
    backoff_options,
    build_adaptive,
    build_cron,
    build_load_adaptive,
    cron_preview,
    until_conditions,
    until_deadline,
    wrap_schedule,
)
from repeater.schedules import (
    OVERRUN_POLICIES,
    BackToBack,
    FixedRate,
    RetryPattern,
    Schedule,
)

__all__ = [
    "COMMON_GROUPS",
    "CRON_AHEAD",
    "MODES",
    "OUTPUT_OPTIONS",
    "PATTERN_OPTIONS",
    "RATE_OPTIONS",
    "STOP_OPTIONS",
    "TIMING_OPTIONS",
    "Mode",
    "all_options",
    "apply_config",
    "backoff_mode",
    "build_runner",
    "find_mode",
    "fixed_rate_or_back_to_back",
    "jitter_spec",
    "local_gate",
    "main",
    "main_help",
    "make_reporter",
    "mode_help",
    "rate_limited",
    "rate_limiter",
    "run_coordinated",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Callable, Sequence

    from patience.config import Config
    from patience.coordination import MetricsReporter
    from patience.ratelimit.algorithms import Limiter
    from patience.ratelimit.gate import Gate
    from repeater.output import Reporter
    from repeater.runner import Runner

    RunnerBuilder = Callable[[Gate | None, MetricsReporter | None], Runner]


def jitter_spec(text: str) -> str:
    """Validated now, resolved against --every later: "10%" or a duration."""
    if text.endswith("%"):
        try:
            pct = decimal(text[:-1])
        except ValueError:
            raise ValueError(f'"{text}" is not a percentage (try 10%)') from None
        if not 0 <= pct <= 100:
            raise ValueError(f'"{text}" must be between 0% and 100%')
    else:
        parse_duration(text)
    return text


CRON_AHEAD = 64  # runs of a cron schedule looked at for its longest gap (_cron_schedule)
STOP_OPTIONS = [
    Option(
        "every",
        "--every",
        "-e",
        convert=positive_duration,
        metavar="DUR",
        help="start a run every DUR, on absolute deadlines (no drift)",
    ),
    Option("times", "--times", "-t", convert=parse_int(1), metavar="N", help="stop after N runs"),
    Option(
        "for_",
        "--for",
        "-f",
        convert=positive_duration,
        metavar="DUR",
        help="start no run later than DUR after the start",
    ),
    Option("until_success", "--until-success", help="stop after the first successful run (exit 0)"),
    Option("until_failure", "--until-failure", help="stop after the first failed run"),
    Option("stop_on_failure", "--stop-on-failure", help="same as --until-failure"),
    *UNTIL_OPTIONS,
    Option(
        "max_failures",
        "--max-failures",
        convert=parse_int(1),
        metavar="N",
        help="stop once N runs have failed",
    ),
]
TIMING_OPTIONS = [
    Option(
        "timeout",
        "--timeout",
        convert=positive_duration,
        metavar="DUR",
        help="a run still going after DUR is sent SIGTERM, and fails (reason timeout)",
    ),
    Option(
        "kill_after",
        "--kill-after",
        convert=parse_duration,
        default=5.0,
        metavar="DUR",
        help="SIGKILL a run that outlives SIGTERM by DUR",
    ),
    Option(
        "parallel",
        "--parallel",
        convert=parse_int(1, 1024),
        default=1,
        metavar="N",
        help="allow up to N runs in flight, so the rate holds when runs are slow",
    ),
    Option(
        "jitter",
        "--jitter",
        convert=jitter_spec,
        metavar="J",
        help="delay each run by a random 0..J (10%% of --every, or a duration); no drift",
    ),
    Option(
        "immediate",
        "--immediate",
        default=True,
        negatable=True,
        help="first run at once (--no-immediate waits one interval)",
    ),
    Option(
        "on_overrun",
        "--on-overrun",
        convert=parse_choice(*OVERRUN_POLICIES),
        default="skip",
        metavar="POLICY",
        help="a run outlasts its interval: skip missed ticks, burst them, or delay the phase",
    ),
]
RATE_OPTIONS = [
    Option(
        "rate",
        "--rate",
        "-r",
        convert=Limit.parse,
        metavar="N/DUR",
        help="start at most N runs in any window of DUR (e.g. 100/1h, 10/s); exact",
    ),
    Option(
        "retry_pattern",
        "--retry-pattern",
        "-p",
        convert=offset_list,
        metavar="OFFSETS",
        help="after a failure, retry at these offsets from it (e.g. 0,10m,30m)",
    ),
]
PATTERN_OPTIONS = [
    Option(
        "success_pattern",
        "--success-pattern",
        convert=str,
        metavar="RE",
        help="a run whose output matches RE succeeds (unless the failure pattern matches)",
    ),
    Option(
        "failure_pattern",
        "--failure-pattern",
        convert=str,
        metavar="RE",
        help="a run whose output matches RE fails, whatever its exit code",
    ),
    Option("case_insensitive", "--case-insensitive", help="patterns ignore case"),
]
OUTPUT_OPTIONS = [
    Option("stream", "--stream", "-s", help="pass the command's output through (the default)"),
    Option("quiet", "--quiet", "-q", help="no command output, no summary; errors only"),
    Option("verbose", "--verbose", "-v", help="a line per run on stderr"),
    Option("stats_only", "--stats-only", help="print only the summary, on stdout"),
    Option("json", "--json", help="a JSON object per run, then a summary object, on stdout"),
    Option(
        "output_prefix",
        "--output-prefix",
        "-o",
        convert=str,
        metavar="STR",
        help="prefix each line of the command's output with STR",
    ),
    Option("progress", "--progress", help="a live status line on stderr (when a terminal)"),
    SHOW_NEXT_OPTION,
]
COMMON_GROUPS = [
    ("Stop conditions", STOP_OPTIONS),
    ("Timing", TIMING_OPTIONS),
    ("Rate limit", RATE_OPTIONS),
    ("HTTP-aware timing", HTTP_OPTIONS),
    ("Patterns", PATTERN_OPTIONS),
    ("Output", OUTPUT_OPTIONS),
    ("Daemon", DAEMON_OPTIONS),
]


class Mode:
    """A subcommand: names, its own options, the option it requires, its schedule."""

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        summary: str,
        required: str,
        build: Callable[[dict[str, object]], Schedule],
        options: Sequence[Option] = (),
        example: str = "",
        notes: str = "",
        preview: Callable[[Parsed], int] | None = None,
    ) -> None:
        self.name = name
        self.aliases = aliases
        self.summary = summary
        self.required = required
        self.build = build
        self.options = list(options)
        self.example = example
        self.notes = notes  # how the mode decides, for its --help
        self.preview = preview  # what --show-next does without a command


def fixed_rate_or_back_to_back(v: dict[str, object]) -> Schedule:
    every = v["every"]
    if not isinstance(every, float):
        return BackToBack()
    return FixedRate(
        every,
        policy=str(v["on_overrun"]),
        immediate=bool(v["immediate"]),
        jitter=_jitter(v.get("jitter"), every),
    )


def rate_limited(v: dict[str, object]) -> Schedule:
    """As often as --rate allows (on --every ticks when given); --retry-pattern on failure."""
    inner = fixed_rate_or_back_to_back(v)
    offsets = v["retry_pattern"]
    return RetryPattern(inner, offsets) if isinstance(offsets, list) else inner


def _jitter(spec: object, every: float) -> Callable[[], float] | None:
    if not isinstance(spec, str):
        return None
    span = every * float(spec[:-1]) / 100 if spec.endswith("%") else parse_duration(spec)
    if span <= 0:
        return None
    import random

    rng = random.Random()
    return lambda: rng.random() * span


def backoff_mode(name: str) -> Mode:
    """A backoff mode as patience.backoff declares its strategy (aliases, delay, parameters)."""
    declaration = DECLARATIONS[name]
    first = declaration.params[0]  # --base-delay, or --increment for linear: required
    return Mode(
        name,
        declaration.aliases,
        f"wait {declaration.summary} after the n-th failed run in a row",
        first.name,
        backoff_builder(name),
        backoff_options(name),
        example=f"rpr {name} {first.flag} 1s --attempts 5 -- curl -fsS URL",
        notes=BACKOFF_RULE + "\n",
    )


MODES: list[Mode] = [
    Mode(
        "interval",
        ("int", "i"),
        "run the command every DUR",
        "every",
        fixed_rate_or_back_to_back,
        example="rpr interval --every 30s -- curl -fsS URL",
    ),
    Mode(
        "count",
        ("cnt", "c"),
        "run the command N times (back to back without --every)",
        "times",
        fixed_rate_or_back_to_back,
        example="rpr count --times 10 -- ./check.sh",
    ),
    Mode(
        "duration",
        ("dur", "d"),
        "run the command for DUR (back to back without --every)",
        "for_",
        fixed_rate_or_back_to_back,
        example="rpr duration --for 1m --every 5s -- date",
    ),
    Mode(
        "rate-limit",
        ("rate", "rl", "r"),
        "run the command as often as --rate allows, never more",
        "rate",
        rate_limited,
        example="rpr rate-limit --rate 100/1h --times 500 -- curl -fsS URL",
    ),
    Mode(
        "cron",
        ("cr",),
        "run the command at the times a cron expression matches",
        "cron",
        build_cron,
        CRON_OPTIONS,
        example="rpr cron --cron '*/5 * * * *' --tz Europe/London -- ./report.sh",
        notes=CRON_NOTES,
        preview=cron_preview,
    ),
    Mode(
        "adaptive",
        ("adapt", "a"),
        "run the command at an interval that backs off when runs fail or slow down",
        "base_interval",
        build_adaptive,
        ADAPTIVE_OPTIONS,
        example="rpr adaptive --base-interval 1s --show-metrics -- curl -fsS URL",
        notes=ADAPTIVE_RULE + "\n",
    ),
    Mode(
        "load-adaptive",
        ("load", "la"),
        "run the command less often while the host is busy, more often when idle",
        "base_interval",
        build_load_adaptive,
        LOAD_OPTIONS,
        example="rpr load-adaptive --base-interval 10s --target-cpu 50 -- ./batch.sh",
        notes=LOAD_RULE + "\n",
    ),
    *(backoff_mode(name) for name in BACKOFF_MODES),
]


def find_mode(name: str) -> Mode | None:
    for mode in MODES:
        if name == mode.name or name in mode.aliases:
            return mode
    return None


def all_options(mode: Mode) -> list[Option]:
    opts = list(mode.options)
    seen = {o.dest for o in opts}
    for _, group in COMMON_GROUPS:
        opts += [o for o in group if o.dest not in seen]
    return opts


def _required_name(mode: Mode) -> str:
    return next(o.long for o in all_options(mode) if o.dest == mode.required)


def main_help() -> str:
    rows = "\n".join(
        f"  {m.name:20} {m.summary}" + (f" (aliases: {', '.join(m.aliases)})" if m.aliases else "")
        for m in MODES
    )
    return (
        "usage: rpr [--config FILE] SUBCOMMAND [OPTIONS] -- COMMAND [ARGS...]\n"
        "       rpr metrics summary|tools|usage|runs|trend [OPTIONS]\n"
        "       rpr alerts [--all] [--json]\n\n"
        "Run a command continuously, on time. Success does not stop it.\n\n"
        f"Subcommands:\n{rows}\n\n"
        "Global options:\n"
        "  -h, --help     show this help (rpr SUBCOMMAND --help for a subcommand's options)\n"
        "  -v, --version  show the version\n"
        "  --config FILE  read settings from FILE\n\n"
        "Exit codes: 0 no run failed; 1 a run failed; 2 usage error; 126/127 the command\n"
        "cannot be run / was not found; 129 hung up (SIGHUP); 130 interrupted (SIGINT);\n"
        "143 terminated (SIGTERM).\n"
    )


def mode_help(mode: Mode) -> str:
    aliases = f" (aliases: {', '.join(mode.aliases)})" if mode.aliases else ""
    parts = [
        f"usage: rpr {mode.name} [OPTIONS] -- COMMAND [ARGS...]{aliases}\n\n"
        f"{mode.summary[0].upper()}{mode.summary[1:]}. Required: {_required_name(mode)}.\n"
        + (f"Example: {mode.example}\n" if mode.example else "")
        + (f"\n{mode.notes}" if mode.notes else "")
    ]
    if mode.options:
        parts.append(f"{mode.name.capitalize()} options:\n{render_options(mode.options)}\n")
    own = {o.dest for o in mode.options}
    for title, group in COMMON_GROUPS:
        shown = [o for o in group if o.dest not in own]
        parts.append(f"{title}:\n{render_options(shown)}\n")
    parts.append("The command sees RPR_ITERATION (1 for the first run).\n")
    return "\n".join(parts)


def make_reporter(v: dict[str, object], mode_name: str) -> Reporter:
    from repeater import output

    chosen = [k for k in ("stream", "quiet", "verbose", "stats_only", "json") if v[k]]
    if v["output_prefix"] is not None:
        chosen.append("output_prefix")
    conflicts = [
        ("quiet", "stream"),
        ("quiet", "verbose"),
        ("json", "stream"),
        ("json", "output_prefix"),
        ("json", "verbose"),
        ("quiet", "output_prefix"),
    ]
    flag = {k: "--" + k.replace("_", "-") for k in chosen}
    if "stats_only" in chosen and len(chosen) > 1:
        other = next(flag[k] for k in chosen if k != "stats_only")
        raise UsageError(f"{mode_name}: --stats-only cannot be combined with {other}")
    for a, b in conflicts:
        if a in chosen and b in chosen:
            raise UsageError(f"{mode_name}: {flag[a]} and {flag[b]} cannot be used together")
    reporter: Reporter
    if v["stats_only"]:
        reporter = output.StatsOnlyReporter()
    elif v["json"]:
        reporter = output.JsonReporter()
    elif v["quiet"]:
        reporter = output.QuietReporter()
    elif v["verbose"]:
        reporter = output.VerboseReporter(prefix=_opt_str(v["output_prefix"]))
    else:
        reporter = output.Reporter(prefix=_opt_str(v["output_prefix"]))
    reporter.progress = bool(v["progress"]) and output.status_line_possible()
    reporter.total = v["times"] if isinstance(v["times"], int) else None
    return reporter


def _opt_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def build_runner(mode: Mode, parsed: Parsed) -> RunnerBuilder:
    """Check the settings and build the schedule; the loop itself is made once the gate and
    the metrics reporter are known (--rate, --daemon)."""
    from patience.conditions import PatternError, compile_pattern
    from repeater.runner import Runner
    from repeater.stop import StopConditions

    v = parsed.values
    ctx = mode.name
    if v[mode.required] is None:
        raise UsageError(f"{ctx}: {_required_name(mode)} is required (see rpr {ctx} --help)")
    require_command(parsed, ctx, f"rpr {ctx} ... -- echo hi")
    if isinstance(v["jitter"], str) and v["jitter"].endswith("%") and v["every"] is None:
        raise UsageError(f"{ctx}: --jitter {v['jitter']} needs --every (or give a duration)")
    reporter = make_reporter(v, ctx)
    try:
        ci = bool(v["case_insensitive"])
        patterns: dict[str, re.Pattern[str] | None] = {
            key: compile_pattern(text, "--" + key.replace("_", "-"), ci)
            if isinstance(text := v[key], str)
            else None
            for key in ("success_pattern", "failure_pattern")
        }
    except PatternError as exc:
        raise UsageError(f"{ctx}: {exc}") from None
    schedule, hints = wrap_schedule(mode.build(v), parsed, ctx)
    if schedule.sequential and int(str(v["parallel"])) > 1:
        raise UsageError(f"{ctx}: --parallel needs a fixed schedule; {mode.name} waits for runs")
    import time

    for_ = v["for_"]
    stop = StopConditions(
        times=v["times"] if isinstance(v["times"], int) else None,
        deadline=until_deadline(v, time.monotonic() + for_ if isinstance(for_, float) else None),
        until_success=bool(v["until_success"]),
        max_failures=1
        if v["until_failure"] or v["stop_on_failure"]
        else (v["max_failures"] if isinstance(v["max_failures"], int) else None),
        until=until_conditions(v, ctx),
    )
    timeout = v["timeout"]

    def build(gate: Gate | None, metrics: MetricsReporter | None) -> Runner:
        return Runner(
            parsed.command,
            schedule,
            stop,
            reporter,
            success_pattern=patterns["success_pattern"],
            failure_pattern=patterns["failure_pattern"],
            timeout=timeout if isinstance(timeout, float) else None,
            kill_after=float(str(v["kill_after"])),
            parallel=int(str(v["parallel"])),
            gate=gate,
            hints=hints,
            metrics=metrics,
        )

    return build


def rate_limiter(v: dict[str, object]) -> Limiter | None:
    """--rate's limiter: the gate itself alone, the daemon's local fallback with --daemon."""
    if not isinstance(v["rate"], Limit):
        return None
    from patience.ratelimit.algorithms import limiter_for

    return limiter_for(v["rate"])


def local_gate(v: dict[str, object]) -> Gate | None:
    limiter = rate_limiter(v)
    if limiter is None:
        return None
    from patience.ratelimit.gate import LocalGate

    return LocalGate(limiter)


def apply_config(parsed: Parsed, mode: Mode, config_file: str | None) -> Config:
    """Fill the options the user did not give from the configuration files and environment
    (flags always win), and return the configuration. A bad value is a usage error naming
    the file and key."""
    config = load_config("rpr", config_file)
    mapping = {"timeout": "repeater.default_timeout", "daemon": "repeater.daemon_enabled"}
    if mode.name == "interval":
        mapping["every"] = "repeater.default_interval"
    config.fill(parsed.values, parsed.explicit, mapping)
    if not config.documents:  # nothing configured: keep start-up free of the schema
        return config
    stop_flags = {"until_failure", "stop_on_failure", "max_failures"}
    if not parsed.explicit & stop_flags and not config.flag("repeater.continue_on_error"):
        parsed.values["stop_on_failure"] = True
    return config


def run_coordinated(build: RunnerBuilder, mode: Mode, parsed: Parsed, config: Config) -> int:
    """--daemon: each run takes its token from patience-daemon (a --rate is declared to it,
    so the limit holds across every instance) and is reported to its metrics store."""
    from patience.coordination import CoordinationError, coordinate

    v = parsed.values
    rate = v["rate"]
    try:
        coordination = coordinate(
            "rpr",
            parsed,
            config,
            declared=rate if isinstance(rate, Limit) else None,
            local=rate_limiter(v),
            labels={"mode": mode.name},
            schedule=_daemon_schedule(mode, v),
        )
    except CoordinationError as exc:
        raise UsageError(str(exc)) from None
    try:
        return build(coordination.gate, coordination.metrics).run()
    finally:
        coordination.close()


def _daemon_schedule(mode: Mode, v: dict[str, object]) -> dict[str, object] | None:
    """The schedule `register_schedule` tells the daemon (shown in its resource state), for
    the modes it can describe."""
    if mode.name == "cron":
        return _cron_schedule(v)
    if mode.name not in ("interval", "count", "duration"):
        return None
    every, times, for_ = v["every"], v["times"], v["for_"]
    schedule: dict[str, object] = {"type": mode.name, "coordination": True}
    if isinstance(every, float):
        schedule["interval"] = every
    if isinstance(times, int):
        schedule["count"] = times
    if isinstance(for_, float):
        schedule["duration"] = for_
    return schedule


def _cron_schedule(v: dict[str, object]) -> dict[str, object]:
    """A cron schedule with, as its interval, the longest gap between its next CRON_AHEAD
    runs: how long the daemon's missed-schedule alert waits (docs/alerting.md)."""
    import time
    from itertools import pairwise

    from repeater.cron import CronSpec, CronTimes, load_zone

    spec = v["cron"]
    assert isinstance(spec, CronSpec)
    times = CronTimes(spec, load_zone(str(v["timezone"]))).next_times(time.time(), CRON_AHEAD)
    gap = max(later - earlier for earlier, later in pairwise(times))
    return {"type": "cron", "interval": gap, "coordination": True}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except UsageError as exc:
        say("rpr", str(exc))
        return ExitStatus.USAGE


def _main(args: list[str]) -> int:
    done, config_file = parse_global(
        args, prog="rpr", version=__version__, help_text=main_help, word="subcommand"
    )
    if done:
        return ExitStatus.OK
    if not args:
        raise UsageError("no subcommand (try rpr interval --every 1s -- CMD, or rpr --help)")
    name = args.pop(0)
    if name == "alerts":
        from patience.alertsview import main as alerts_main

        return alerts_main(args, "rpr", config_file)
    if name == "metrics":
        from patience.metricsview.cli import main as metrics_main

        return metrics_main(args, "rpr", config_file)
    mode = find_mode(name)
    if mode is None:
        names = [n for m in MODES for n in (m.name, *m.aliases)]
        raise unknown_choice("subcommand", name, names, "rpr")
    if asks_help(args):
        sys.stdout.write(mode_help(mode))
        return ExitStatus.OK
    parsed = parse(all_options(mode), args, mode.name)
    if mode.preview is not None and parsed.values["show_next"] and not parsed.saw_separator:
        return mode.preview(parsed)
    config = apply_config(parsed, mode, config_file)
    build = build_runner(mode, parsed)
    if parsed.values["daemon"]:
        return run_coordinated(build, mode, parsed, config)
    return build(local_gate(parsed.values), None).run()
