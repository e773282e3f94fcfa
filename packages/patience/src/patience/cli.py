"""`patience`: the command line. Parse, validate, build the strategy's pacing, retry.

Grammar: patience [--config FILE] STRATEGY [OPTIONS] -- COMMAND [ARGS...]
         patience config ...   (the configuration tool, patience.config.cli)
Each strategy is one StrategySpec: its canonical name (aliases come from backoff.py), its
own options and how it builds its pacing. Every strategy also takes the common options.
"""

from __future__ import annotations

import sys

from patience import __version__
from patience.backoff import DECLARATIONS, STRATEGY_NAMES
from patience.cliparse import (
    Option,
    UsageError,
    asks_help,
    load_config,
    offsets,
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
    "strategy_help",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from patience.backoff import Strategy
    from patience.cliparse import Parsed
    from patience.pacing import Pacing


# Converters ------------------------------------------------------------------------------


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


# Options ---------------------------------------------------------------------------------

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
    backoff.py), the options made from it, how it paces attempts, an example."""

    def __init__(
        self, name: str, build: Callable[[dict[str, object], list[str]], Pacing], example: str
    ) -> None:
        declaration = DECLARATIONS[name]
        self.name = name
        self.summary = declaration.summary
        self.aliases = list(declaration.aliases)
        self.options = [param_option(p, SHORT_FLAGS[p.name]) for p in declaration.params]
        self.build = build
        self.example = example

    def all_options(self) -> list[Option]:
        own = {o.dest for o in self.options}
        return [*self.options, *(o for o in COMMON_OPTIONS + DAEMON_OPTIONS if o.dest not in own)]


# Building each strategy's pacing ---------------------------------------------------------


def _plain(v: dict[str, object], _command: list[str]) -> Pacing:
    from patience.backoff import make_strategy
    from patience.pacing import Backoff

    name = str(v["strategy"])
    params = {o.dest: v[o.dest] for o in SPECS[name].options}
    return Backoff(make_strategy(name, **params))


def _fallback_strategy(v: dict[str, object], max_delay: float) -> Strategy:
    """The wrapped backoff: --base-delay is its first delay, whatever its kind."""
    from patience.backoff import make_strategy

    name, base = str(v["fallback"]), v["base_delay"]
    if name == "fixed":
        return make_strategy(name, delay=base)
    if name == "linear":
        return make_strategy(name, increment=base, max_delay=max_delay)
    return make_strategy(name, base_delay=base, max_delay=max_delay)


def _http_aware(v: dict[str, object], _command: list[str]) -> Pacing:
    from patience.backoff import DEFAULT_MAX_DELAY
    from patience.pacing import HttpAware

    max_delay = _float(v["max_delay"])
    return HttpAware(_fallback_strategy(v, min(DEFAULT_MAX_DELAY, max_delay)), max_delay)


def _adaptive(v: dict[str, object], command: list[str]) -> Pacing:
    from patience.learning import Memory, memory_path
    from patience.pacing import Adaptive

    path = memory_path(command)
    memory, warning = Memory.load(
        path, command, _float(v["learning_rate"]), int(str(v["memory_window"]))
    )
    if warning:
        say("patience", f"adaptive: {warning}")
    return Adaptive(_fallback_strategy(v, _float(v["max_delay"])), memory, path)


def _diophantine(v: dict[str, object], _command: list[str]) -> Pacing:
    """--rate-limit per --window must be a limit the limiters take (checked there, once)."""
    from patience.pacing import Diophantine
    from patience.ratelimit.algorithms import RateLimitError, SlidingWindowLog

    planned = v["retry_offsets"]
    assert isinstance(planned, list)
    try:
        limiter = SlidingWindowLog(int(str(v["rate_limit"])), _float(v["window"]))
    except RateLimitError as exc:
        raise UsageError(f"diophantine: --rate-limit/--window: {exc}") from None
    return Diophantine(planned, limiter)


def _float(value: object) -> float:
    assert isinstance(value, float)
    return value


SPECS: dict[str, StrategySpec] = {
    spec.name: spec
    for spec in [
        StrategySpec(
            "http-aware", _http_aware, "patience http-aware -- curl -fsi https://api.example.com/"
        ),
        StrategySpec(
            "exponential", _plain, "patience exponential --base-delay 500ms -- ./flaky.sh"
        ),
        StrategySpec("linear", _plain, "patience linear --increment 2s -- ./flaky.sh"),
        StrategySpec("fixed", _plain, "patience fixed --delay 5s --attempts 10 -- ping -c1 host"),
        StrategySpec("jitter", _plain, "patience jitter -- ./flaky.sh"),
        StrategySpec("decorrelated-jitter", _plain, "patience decorrelated-jitter -- ./flaky.sh"),
        StrategySpec("fibonacci", _plain, "patience fibonacci -- ./flaky.sh"),
        StrategySpec("polynomial", _plain, "patience polynomial --exponent 1.5 -- ./flaky.sh"),
        StrategySpec("adaptive", _adaptive, "patience adaptive -- ./deploy-check.sh"),
        StrategySpec(
            "diophantine",
            _diophantine,
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
    config = None  # loaded once: here for `patience -- CMD`, else after the options
    if args[0] == "--":  # the configured patience.default_strategy (exponential by default)
        config = load_config("patience", config_file)
        name = config.text("patience.default_strategy") or "exponential"
    else:
        name = args.pop(0)
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
    canonical = STRATEGY_NAMES.get(name)
    if canonical is None:
        raise unknown_choice("strategy", name, list(STRATEGY_NAMES), "patience")
    spec = SPECS[canonical]
    if asks_help(args):
        sys.stdout.write(strategy_help(spec))
        return ExitStatus.OK
    context = f"patience {spec.name}"
    parsed = parse(spec.all_options(), args, context)
    if config_file is not None and "config" not in parsed.explicit:
        parsed.values["config"] = config_file
    require_command(parsed, spec.name, f"patience {spec.name} -- curl -f https://example.com")
    config = _apply_config(parsed, config)
    if parsed.values["debug_config"]:
        _debug_config(spec, parsed, config)
    build = _build(spec, parsed)
    if parsed.values["daemon"]:
        return _run_coordinated(build, spec, parsed, config)
    return build(None, None).run()


# Options whose default the configuration may set (the flag, when given, wins).
CONFIGURED = {
    "attempts": "patience.attempts",
    "timeout": "patience.timeout",
    "success_pattern": "patience.success_pattern",
    "failure_pattern": "patience.failure_pattern",
    "case_insensitive": "patience.case_insensitive",
    "daemon": "patience.daemon_enabled",
}


def _apply_config(parsed: Parsed, config: Config | None) -> Config:
    """The configuration files and environment (`config` when already loaded), under the
    command line."""
    if config is None:
        config_file = parsed.values["config"]
        config = load_config("patience", config_file if isinstance(config_file, str) else None)
    config.fill(parsed.values, parsed.explicit, CONFIGURED)
    return config


def _run_coordinated(
    build: RetryBuilder, spec: StrategySpec, parsed: Parsed, config: Config
) -> int:
    """--daemon: each attempt takes its token from patience-daemon and is reported to it.
    diophantine declares its --rate-limit per --window, so the limit holds across every
    instance; its pacing keeps enforcing it locally should the daemon go away."""
    import os

    from patience.coordination import CoordinationError, coordinate

    v = parsed.values
    declared = None
    if spec.name == "diophantine":
        from patience.settings import Limit

        declared = Limit(int(str(v["rate_limit"])), _float(v["window"]))
    labels = {"strategy": spec.name}
    if os.environ.get("RPR_ITERATION"):  # an attempt of one rpr run
        labels["rpr_execution"] = os.environ["RPR_ITERATION"]
    try:
        coordination = coordinate(
            "patience", parsed, config, declared=declared, learn=declared is None, labels=labels
        )
    except CoordinationError as exc:
        raise UsageError(str(exc)) from None
    try:
        return build(coordination.gate, coordination.metrics).run()
    finally:
        coordination.close()


def _debug_config(spec: StrategySpec, parsed: Parsed, config: Config) -> None:
    lines = [f"patience: settings for {spec.name}:"]
    for opt in spec.all_options():
        if opt.dest != "debug_config":
            source = "default"
            if opt.dest in parsed.explicit:
                source = "command line"
            elif opt.dest in CONFIGURED and config.documents:
                source = config.source(CONFIGURED[opt.dest])
            lines.append(f"  {opt.long} = {_shown(parsed.values[opt.dest], opt)} ({source})")
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


def _build(spec: StrategySpec, parsed: Parsed) -> RetryBuilder:
    """Check the settings and build the pacing; the loop itself is made once the gate and
    the metrics reporter are known (--daemon)."""
    from patience.retry import Retry
    from patience.retry_report import Reporter

    v = dict(parsed.values, strategy=spec.name)
    if spec.name == "diophantine":
        _plan_attempts(v, parsed.explicit)
    patterns = _patterns(v, spec.name)
    timeout = _float(v["timeout"])
    max_time = v["max_time"]
    retry_on = v["retry_on"]
    attempts = int(str(v["attempts"]))
    pacing = spec.build(v, parsed.command)

    def build(gate: Gate | None, metrics: MetricsReporter | None) -> Retry:
        return Retry(
            parsed.command,
            pacing,
            Reporter(attempts, bool(v["quiet"])),
            attempts=attempts,
            timeout=timeout or None,
            kill_after=_float(v["kill_after"]),
            max_time=max_time if isinstance(max_time, float) else None,
            retry_on=retry_on if isinstance(retry_on, frozenset) else None,
            success_pattern=patterns.get("success_pattern"),
            failure_pattern=patterns.get("failure_pattern"),
            gate=gate,
            metrics=metrics,
        )

    return build


def _plan_attempts(v: dict[str, object], explicit: set[str]) -> None:
    """Explicit offsets without --attempts plan one attempt per offset. The first planned
    attempt must fit the --max-time budget."""
    planned = v["retry_offsets"]
    if isinstance(planned, str):  # the default, as the user would write it
        v["retry_offsets"] = planned = offsets(planned)
    assert isinstance(planned, list)
    if "retry_offsets" in explicit and "attempts" not in explicit:
        v["attempts"] = len(planned)
    max_time = v["max_time"]
    if isinstance(max_time, float) and planned[0] > max_time:
        raise UsageError(
            f"diophantine: --max-time {format_duration(max_time)} ends before the first"
            f" planned attempt (--retry-offsets starts at {format_duration(planned[0])})"
        )


def _patterns(v: dict[str, object], name: str) -> dict[str, re.Pattern[str]]:
    texts = {k: v[k] for k in ("success_pattern", "failure_pattern") if isinstance(v[k], str)}
    if not texts:
        return {}
    from patience.conditions import PatternError, compile_pattern

    try:
        return {
            key: compile_pattern(
                str(text), "--" + key.replace("_", "-"), bool(v["case_insensitive"])
            )
            for key, text in texts.items()
        }
    except PatternError as exc:
        raise UsageError(f"{name}: {exc}") from None


if TYPE_CHECKING:
    import re

    from patience.config import Config
    from patience.coordination import MetricsReporter
    from patience.ratelimit.gate import Gate
    from patience.retry import Retry

    RetryBuilder = Callable[[Gate | None, MetricsReporter | None], Retry]
