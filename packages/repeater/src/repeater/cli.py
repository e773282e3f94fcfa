"""`rpr`: the command line. Parse, build the settings, run them.

Grammar: rpr [--config FILE] SUBCOMMAND [options] -- COMMAND [ARGS...]
Each subcommand (mode) is one entry of repeater.modes.MODES: its aliases, its own options
and how it builds its schedule. Every mode also takes the common options (stop conditions,
timing, patterns, output; repeater.options). The parsed line, with the configuration files
and the environment under it, becomes RepeatSettings, which repeater.run.run carries
out.
"""

from __future__ import annotations

import sys

from patience.cliparse import (
    UsageError,
    asks_help,
    load_config,
    parse,
    parse_global,
    render_options,
    require_command,
    unknown_choice,
)
from patience.exits import ExitStatus
from patience.stderr import say
from repeater import __version__
from repeater.modes import MODES, Mode, all_options, find_mode, required_flag
from repeater.options import COMMON_GROUPS, HTTP_OPTIONS

__all__ = ["apply_config", "main", "main_help", "mode_help", "output_settings", "repeat_settings"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from patience.cliparse import Parsed
    from patience.config import Config
    from patience.settings import Limit, RunSettings
    from patience.settings.daemon import DaemonSettings
    from repeater.http_timing import HintReader
    from repeater.run import OutputSettings, RepeatSettings
    from repeater.schedules import Schedule
    from repeater.stop import StopConditions, Until


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
        f"{mode.summary[0].upper()}{mode.summary[1:]}. Required: {required_flag(mode)}.\n"
        + (f"Example: {mode.example}\n" if mode.example else "")
        + (f"\n{mode.parts.notes}" if mode.parts.notes else "")
    ]
    options = mode.parts.options
    if options:
        parts.append(f"{mode.name.capitalize()} options:\n{render_options(options)}\n")
    own = {o.dest for o in options}
    for title, group in COMMON_GROUPS:
        shown = [o for o in group if o.dest not in own]
        parts.append(f"{title}:\n{render_options(shown)}\n")
    parts.append("The command sees RPR_ITERATION (1 for the first run).\n")
    return "\n".join(parts)


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
    preview = mode.parts.preview
    if preview is not None and parsed.flag("show_next") and not parsed.saw_separator:
        return preview(parsed)
    from repeater.run import run

    config = apply_config(parsed, mode, config_file)
    return run(repeat_settings(mode, parsed, config))


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


def repeat_settings(mode: Mode, parsed: Parsed, config: Config) -> RepeatSettings:
    """The settings of `rpr MODE ... -- CMD`, checked."""
    from patience.settings import Limit
    from repeater.run import RepeatSettings

    ctx = mode.name
    if parsed.values[mode.required] is None:
        raise UsageError(f"{ctx}: {required_flag(mode)} is required (see rpr {ctx} --help)")
    require_command(parsed, ctx, f"rpr {ctx} ... -- echo hi")
    jitter = parsed.text("jitter")
    if jitter is not None and jitter.endswith("%") and parsed.values["every"] is None:
        raise UsageError(f"{ctx}: --jitter {jitter} needs --every (or give a duration)")
    output = output_settings(parsed, ctx)
    run = _run(parsed, ctx)
    schedule, hints = _schedule(mode, parsed)
    stop = _stop(parsed, ctx)
    rate = parsed.value("rate", Limit)
    try:
        return RepeatSettings(
            run,
            schedule,
            stop,
            output=output,
            rate=rate,
            parallel=parsed.whole("parallel"),
            hints=hints,
            daemon=_daemon(mode, parsed, config, rate) if parsed.flag("daemon") else None,
        )
    except ValueError as exc:
        raise UsageError(f"{ctx}: {exc}") from None


def output_settings(parsed: Parsed, mode: str) -> OutputSettings:
    """The one output asked for; a usage error for two that cannot go together."""
    from repeater.run import OUTPUTS, OutputSettings

    chosen = [k for k in OUTPUTS if parsed.flag(k)]
    prefix = parsed.text("output_prefix")
    if prefix is not None:
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
        raise UsageError(f"{mode}: --stats-only cannot be combined with {other}")
    for a, b in conflicts:
        if a in chosen and b in chosen:
            raise UsageError(f"{mode}: {flag[a]} and {flag[b]} cannot be used together")
    kind = next((k for k in ("stats_only", "json", "quiet", "verbose") if k in chosen), "stream")
    return OutputSettings(
        kind, prefix=prefix, progress=parsed.flag("progress"), total=parsed.maybe_whole("times")
    )


def _run(parsed: Parsed, mode: str) -> RunSettings:
    """How each run starts and is judged; a bad pattern names its flag."""
    from patience.settings import RunSettings

    try:
        return RunSettings(
            parsed.command,
            timeout=parsed.maybe_number("timeout") or None,
            kill_after=parsed.number("kill_after"),
            success_pattern=parsed.text("success_pattern"),
            failure_pattern=parsed.text("failure_pattern"),
            case_insensitive=parsed.flag("case_insensitive"),
        )
    except ValueError as exc:
        raise UsageError(f"{mode}: {exc}") from None


def _daemon(mode: Mode, parsed: Parsed, config: Config, rate: Limit | None) -> DaemonSettings:
    """--daemon: each run takes its token from patience-daemon (a --rate is declared to it,
    so the limit holds across every instance) and is reported to its metrics store."""
    from patience.daemon_options import daemon_settings

    announce = mode.parts.announce
    return daemon_settings(
        parsed,
        config,
        tool="repeater",
        prog="rpr",
        starts="runs",
        metrics=config.flag("repeater.metrics_enabled"),
        limit=rate,
        labels={"mode": mode.name},
        schedule=None if announce is None else announce(parsed),
        show_waits=parsed.flag("verbose") or parsed.flag("progress"),
    )


def _schedule(mode: Mode, parsed: Parsed) -> tuple[Schedule, HintReader | None]:
    """The mode's schedule, wrapped as --http-aware and --show-next ask (repeater.wrapping,
    imported only then); what reads the hints (None without --http-aware)."""
    schedule = mode.parts.build(parsed)
    asked = parsed.flag("show_next") or any(o.dest in parsed.explicit for o in HTTP_OPTIONS)
    if not asked:
        return schedule, None
    from repeater.wrapping import wrap_schedule

    return wrap_schedule(schedule, parsed, mode.name)


def _stop(parsed: Parsed, mode: str) -> StopConditions:
    import time

    from repeater.stop import StopConditions

    for_ = parsed.maybe_number("for_")
    return StopConditions(
        times=parsed.maybe_whole("times"),
        deadline=_deadline(parsed, None if for_ is None else time.monotonic() + for_),
        until_success=parsed.flag("until_success"),
        max_failures=1
        if parsed.flag("until_failure") or parsed.flag("stop_on_failure")
        else parsed.maybe_whole("max_failures"),
        until=_conditions(parsed, mode),
    )


def _conditions(parsed: Parsed, mode: str) -> list[Until]:
    """The --until-contains/--until-match/--until-changes conditions the user asked for."""
    contains, match = parsed.text("until_contains"), parsed.text("until_match")
    conditions: list[Until] = []
    if contains is None and match is None and not parsed.flag("until_changes"):
        return conditions
    import re

    from patience.conditions import PatternError, compile_pattern
    from repeater.until import UntilChanges, UntilMatch

    ci = parsed.flag("case_insensitive")
    try:
        if contains is not None:
            conditions.append(
                UntilMatch(compile_pattern(re.escape(contains), "--until-contains", ci))
            )
        if match is not None:
            conditions.append(UntilMatch(compile_pattern(match, "--until-match", ci)))
    except PatternError as exc:
        raise UsageError(f"{mode}: {exc}") from None
    if parsed.flag("until_changes"):
        conditions.append(UntilChanges())
    return conditions


def _deadline(parsed: Parsed, deadline: float | None) -> float | None:
    """The earlier of the --for deadline and --until TIME, on the monotonic clock."""
    until = parsed.maybe_number("until")
    if until is None:
        return deadline
    import time

    at = time.monotonic() + (until - time.time())
    return at if deadline is None else min(deadline, at)
