"""`patience`: the command line. Parse, build the settings, run them.

Grammar: patience [--config FILE] STRATEGY [OPTIONS] -- COMMAND [ARGS...]
         patience config ...   (the configuration tool, patience.config.cli)
Each strategy is one StrategySpec: its canonical name (aliases come from backoff.py) and its
own options, made from its declaration there; every strategy also takes the common options
(and the daemon options, patience.daemon_options). The
parsed line, with the configuration files and the environment under it (and each setting's
source, for --debug-config), becomes RetrySettings, which patience.run.run carries out.
"""

from __future__ import annotations

import os
import sys

from patience import __version__
from patience.backoff import DECLARATIONS, STRATEGY_NAMES
from patience.cliparse import (
    Option,
    UsageError,
    asks_help,
    load_config,
    param_option,
    parse,
    parse_global,
    parse_int,
    render_options,
    require_command,
    unknown_choice,
)
from patience.daemon_options import DAEMON_OPTIONS
from patience.durations import format_duration, parse_duration, positive_duration
from patience.exits import ExitStatus
from patience.numbers import whole
from patience.stderr import say, write

__all__ = [
    "COMMON_OPTIONS",
    "CONFIGURED",
    "SHORT_FLAGS",
    "SPECS",
    "StrategySpec",
    "exit_codes",
    "main",
    "main_help",
    "readable_file",
    "retry_settings",
    "sources",
    "strategy_help",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from patience.cliparse import Parsed
    from patience.config import Config
    from patience.settings import RetrySettings, RunSettings, StrategySettings
    from patience.settings.daemon import DaemonSettings


# Options ---------------------------------------------------------------------------------


def exit_codes(text: str) -> frozenset[int]:
    """--retry-on: "1,2,75" or ranges "1-5,75", each within 0..255."""
    codes: set[int] = set()
    for part in text.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            first = whole(low.strip())
            last = whole(high.strip()) if dash else first
        except ValueError:
            raise ValueError(f'"{part.strip()}" is not an exit code (try 1,2,75 or 1-5)') from None
        if not 0 <= first <= last <= 255:
            raise ValueError(f'"{part.strip()}" is not within 0..255 (low-high, low first)')
        codes.update(range(first, last + 1))
    return frozenset(codes)


def readable_file(text: str) -> str:
    """--config: a file the configuration loader can read (see config/sources.py)."""
    from patience.config.sources import check_file

    try:
        check_file(text)
    except OSError as exc:
        raise ValueError(f'cannot read "{text}": {exc.strerror or exc}') from None
    except ValueError as exc:
        raise ValueError(f'cannot read "{text}": {exc}') from None
    return text


# The Go tool's short flags of the strategies' parameters (the rest is declared in backoff.py).
SHORT_FLAGS = {
    "base_delay": "-b",
    "multiplier": "-x",
    "max_delay": "-m",
    "increment": "-i",
    "delay": "-d",
    "exponent": "-e",
    "fallback": "-f",
    "learning_rate": "-r",
    "memory_window": "-w",
    "rate_limit": "-r",
    "window": "-w",
    "retry_offsets": "-o",
}

COMMON_OPTIONS = [
    Option(
        "attempts",
        "--attempts",
        "-a",
        "--max-attempts",
        convert=parse_int(1, 1000),
        default=3,
        metavar="N",
        help="run the command at most N times (1..1000)",
    ),
    Option(
        "timeout",
        "--timeout",
        "-t",
        convert=parse_duration,
        default=0.0,
        metavar="DUR",
        help="an attempt still running after DUR gets SIGTERM and fails (0: no limit)",
    ),
    Option(
        "kill_after",
        "--kill-after",
        convert=parse_duration,
        default=5.0,
        metavar="DUR",
        help="SIGKILL an attempt that outlives SIGTERM by DUR",
    ),
    Option(
        "max_time",
        "--max-time",
        convert=positive_duration,
        metavar="DUR",
        help="total budget: no wait that would end past DUR; attempts are cut at DUR",
    ),
    Option(
        "retry_on",
        "--retry-on",
        convert=exit_codes,
        metavar="CODES",
        help="retry only on these exit statuses, e.g. 1,75 or 1-5 (default: any failure)",
    ),
    Option(
        "success_pattern",
        "--success-pattern",
        convert=str,
        metavar="RE",
        help="an attempt whose output matches RE succeeds, whatever its exit code",
    ),
    Option(
        "failure_pattern",
        "--failure-pattern",
        convert=str,
        metavar="RE",
        help="an attempt whose output matches RE fails, and retrying stops at once",
    ),
    Option("case_insensitive", "--case-insensitive", help="patterns ignore case"),
    Option("quiet", "--quiet", "-q", help="none of patience's own lines; errors only"),
    Option(
        "config", "--config", convert=readable_file, metavar="FILE", help="read settings from FILE"
    ),
    Option(
        "debug_config", "--debug-config", help="show each setting and where it came from, on stderr"
    ),
]


class StrategySpec:
    """A strategy on the command line: its declaration (names, summary, parameters, in
    backoff.py), the options made from it (when first asked for: a start makes only its own
    strategy's), an example."""

    def __init__(self, name: str, example: str) -> None:
        declaration = DECLARATIONS[name]
        self.name = name
        self.summary = declaration.summary
        self.aliases = list(declaration.aliases)
        self.example = example
        self._options: list[Option] | None = None

    @property
    def options(self) -> list[Option]:
        if self._options is None:
            params = DECLARATIONS[self.name].params
            self._options = [param_option(p, SHORT_FLAGS[p.name]) for p in params]
        return self._options

    def all_options(self) -> list[Option]:
        own = {o.dest for o in self.options}
        return [*self.options, *(o for o in COMMON_OPTIONS + DAEMON_OPTIONS if o.dest not in own)]


SPECS: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in [
        StrategySpec("http-aware", "patience http-aware -- curl -fsi https://api.example.com/"),
        StrategySpec("exponential", "patience exponential --base-delay 500ms -- ./flaky.sh"),
        StrategySpec("linear", "patience linear --increment 2s -- ./flaky.sh"),
        StrategySpec("fixed", "patience fixed --delay 5s --attempts 10 -- ping -c1 host"),
        StrategySpec("jitter", "patience jitter -- ./flaky.sh"),
        StrategySpec("decorrelated-jitter", "patience decorrelated-jitter -- ./flaky.sh"),
        StrategySpec("fibonacci", "patience fibonacci -- ./flaky.sh"),
        StrategySpec("polynomial", "patience polynomial --exponent 1.5 -- ./flaky.sh"),
        StrategySpec("adaptive", "patience adaptive -- ./deploy-check.sh"),
        StrategySpec(
            "diophantine",
            "patience diophantine --rate-limit 10 --window 1m -o 0,5s,30s -- ./call-api.sh",
        ),
    ]
}


# Help ------------------------------------------------------------------------------------


def main_help() -> str:
    rows = "\n".join(
        f"  {s.name:20} {s.summary}" + (f" (aliases: {', '.join(s.aliases)})")
        for s in SPECS.values()
    )
    return (
        "usage: patience [--config FILE] STRATEGY [OPTIONS] -- COMMAND [ARGS...]\n"
        "       patience config ...\n"
        "       patience metrics summary|tools|usage|runs|trend [OPTIONS]\n"
        "       patience alerts [--all] [--json]\n\n"
        "Retry a command until it succeeds, waiting between attempts as STRATEGY says.\n\n"
        f"Strategies:\n{rows}\n\n"
        "Global options:\n"
        "  -h, --help     show this help (patience STRATEGY --help for its options)\n"
        "  -v, --version  show the version\n"
        "  --config FILE  read settings from FILE\n\n"
        "Exit codes: 0 success; the last attempt's exit status when attempts run out\n"
        "(124 timed out, 128+N killed by signal N); 126/127 the command cannot be run / was\n"
        "not found; 2 usage or config error; 129 hung up (SIGHUP); 130 interrupted (SIGINT);\n"
        "143 terminated (SIGTERM).\n"
    )


def strategy_help(spec: StrategySpec) -> str:
    aliases = f" (aliases: {', '.join(spec.aliases)})"
    return (
        f"usage: patience {spec.name} [OPTIONS] -- COMMAND [ARGS...]{aliases}\n\n"
        f"Delay: {spec.summary}.\nExample: {spec.example}\n\n"
        f"{spec.name.capitalize()} options:\n{render_options(spec.options)}\n\n"
        f"Common options:\n{render_options(COMMON_OPTIONS)}\n\n"
        f"Daemon options:\n{render_options(DAEMON_OPTIONS)}\n\n"
        "The command sees PATIENCE_ATTEMPT (1 for the first attempt).\n"
    )


# Running ---------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        return _main(args)
    except UsageError as exc:
        say("patience", str(exc))
        return ExitStatus.USAGE


def _main(args: list[str]) -> int:
    done, config_file = parse_global(
        args,
        prog="patience",
        version=__version__,
        help_text=main_help,
        word="strategy",
        check_config=readable_file,
    )
    if done:
        return ExitStatus.OK
    if not args:
        raise UsageError("no strategy (try patience exponential -- CMD, or patience --help)")
    config = None  # loaded once: here for `patience -- CMD`, else with the settings
    if args[0] == "--":  # the configured patience.default_strategy (exponential by default)
        config = load_config("patience", config_file)
        name = config.text("patience.default_strategy") or "exponential"
    else:
        name = args.pop(0)
    tool = _other_tool(name, args, config_file)
    if tool is not None:
        return tool
    canonical = STRATEGY_NAMES.get(name)
    if canonical is None:
        raise unknown_choice("strategy", name, list(STRATEGY_NAMES), "patience")
    return _retry(SPECS[canonical], args, config_file, config)


def _other_tool(name: str, args: list[str], config_file: str | None) -> int | None:
    """`patience alerts|metrics|config ...`: that tool's exit status; None for a strategy."""
    if name == "alerts":
        from patience.alertsview import main as alerts_main

        return alerts_main(args, "patience", config_file)
    if name == "metrics":
        from patience.metricsview.cli import main as metrics_main

        return metrics_main(args, "patience", config_file)
    if name == "config":
        from patience.config.cli import main as config_main

        if config_file is not None and args:
            args = [args[0], "--config", config_file, *args[1:]]
        return config_main(args)
    return None


def _retry(
    spec: StrategySpec, args: list[str], config_file: str | None, config: Config | None
) -> int:
    """`patience STRATEGY [OPTIONS] -- CMD`: parse, build the settings, run them."""
    if asks_help(args):
        sys.stdout.write(strategy_help(spec))
        return ExitStatus.OK
    parsed = parse(spec.all_options(), args, f"patience {spec.name}")
    if config_file is not None and "config" not in parsed.explicit:
        parsed.values["config"] = config_file
    require_command(parsed, spec.name, f"patience {spec.name} -- curl -f https://example.com")
    from patience.run import run

    return run(retry_settings(spec, parsed, config))


# Settings --------------------------------------------------------------------------------

# Options whose default the configuration may set (the flag, when given, wins).
CONFIGURED = {
    "attempts": "patience.attempts",
    "timeout": "patience.timeout",
    "success_pattern": "patience.success_pattern",
    "failure_pattern": "patience.failure_pattern",
    "case_insensitive": "patience.case_insensitive",
    "daemon": "patience.daemon_enabled",
}


def retry_settings(spec: StrategySpec, parsed: Parsed, config: Config | None) -> RetrySettings:
    """The settings of `patience STRATEGY ... -- CMD`; `config` when already loaded (for
    `patience -- CMD`'s default strategy), else loaded here, once."""
    from patience.settings import RetrySettings

    if config is None:
        config = load_config("patience", parsed.text("config"))
    config.fill(parsed.values, parsed.explicit, CONFIGURED)
    where = sources(spec, parsed, config)
    if parsed.flag("debug_config"):
        _debug_config(spec, parsed, where)
    strategy = _strategy(spec, parsed)
    if {"retry_offsets"} <= parsed.explicit and "attempts" not in parsed.explicit:
        parsed.values["attempts"] = len(strategy.offsets("retry_offsets"))  # one per offset
    run = _run(spec, parsed)
    daemon = _daemon(spec, parsed, config, strategy) if parsed.flag("daemon") else None
    try:
        return RetrySettings(
            run,
            strategy,
            attempts=parsed.whole("attempts"),
            max_time=parsed.maybe_number("max_time"),
            retry_on=parsed.value("retry_on", frozenset),
            quiet=parsed.flag("quiet"),
            daemon=daemon,
            sources=where,
        )
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def _strategy(spec: StrategySpec, parsed: Parsed) -> StrategySettings:
    from patience.settings import StrategySettings

    try:
        return StrategySettings(spec.name, {o.dest: parsed.values[o.dest] for o in spec.options})
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def _run(spec: StrategySpec, parsed: Parsed) -> RunSettings:
    from patience.settings import RunSettings

    try:
        return RunSettings(
            parsed.command,
            timeout=parsed.number("timeout") or None,
            kill_after=parsed.number("kill_after"),
            success_pattern=parsed.text("success_pattern"),
            failure_pattern=parsed.text("failure_pattern"),
            case_insensitive=parsed.flag("case_insensitive"),
        )
    except ValueError as exc:
        raise UsageError(f"{spec.name}: {exc}") from None


def _daemon(
    spec: StrategySpec, parsed: Parsed, config: Config, strategy: StrategySettings
) -> DaemonSettings:
    """--daemon: each attempt takes its token from patience-daemon and is reported to it.
    diophantine declares its --rate-limit per --window, so the limit holds across every
    instance; its pacing keeps to it here should the daemon go away."""
    from patience.daemon_options import daemon_settings

    labels = {"strategy": spec.name}
    if os.environ.get("RPR_ITERATION"):  # an attempt of one rpr run
        labels["rpr_execution"] = os.environ["RPR_ITERATION"]
    limit = strategy.rate()
    return daemon_settings(
        parsed,
        config,
        tool="patience",
        prog="patience",
        starts="attempts",
        metrics=True,
        limit=limit,
        paced=limit is not None,
        labels=labels,
        show_waits=not parsed.flag("quiet"),
    )


def sources(spec: StrategySpec, parsed: Parsed, config: Config) -> dict[str, str]:
    """Where each option's value came from: the command line, a file and key, the default."""
    where = {}
    for opt in spec.all_options():
        source = "default"
        if opt.dest in parsed.explicit:
            source = "command line"
        elif opt.dest in CONFIGURED and config.documents:
            source = config.source(CONFIGURED[opt.dest])
        where[opt.long] = source
    return where


def _debug_config(spec: StrategySpec, parsed: Parsed, where: dict[str, str]) -> None:
    lines = [f"patience: settings for {spec.name}:"]
    for opt in spec.all_options():
        if opt.dest != "debug_config":
            shown = _shown(parsed.values[opt.dest], opt)
            lines.append(f"  {opt.long} = {shown} ({where[opt.long]})")
    write("\n".join(lines) + "\n")


def _shown(value: object, opt: Option) -> str:
    """A setting as the user would write it."""
    if value is None:
        return "false" if opt.convert is None else "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and opt.metavar == "DUR":
        return format_duration(value)
    if isinstance(value, frozenset):
        return ",".join(str(code) for code in sorted(value))
    return str(value)
