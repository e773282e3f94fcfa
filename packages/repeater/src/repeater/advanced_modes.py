"""The options and schedule builders of rpr's advanced modes (cron, adaptive, load-adaptive,
the backoff strategies) and of the options every mode shares with them (--http-aware and
its settings, the --until conditions, --show-next).

cli.py lists these in its tables. Importing this module costs nothing at start-up: every
schedule module is imported by the builder that needs it.
"""

from __future__ import annotations

from patience.backoff import DECLARATIONS
from patience.cliparse import Option, Parsed, UsageError, param_option, parse_float, parse_int
from patience.durations import format_duration, parse_duration, positive_duration

__all__ = [
    "ADAPTIVE_OPTIONS",
    "ADAPTIVE_RULE",
    "BACKOFF_MODES",
    "BACKOFF_RULE",
    "CRON_NOTES",
    "CRON_OPTIONS",
    "HTTP_OPTIONS",
    "LOAD_OPTIONS",
    "LOAD_RULE",
    "SHORT_FLAGS",
    "SHOW_NEXT_OPTION",
    "UNTIL_OPTIONS",
    "Values",
    "backoff_builder",
    "backoff_options",
    "build_adaptive",
    "build_cron",
    "build_load_adaptive",
    "cron_preview",
    "until_conditions",
    "until_deadline",
    "wrap_schedule",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.cron import CronSpec
    from repeater.http_timing import HintReader
    from repeater.schedules import Schedule
    from repeater.stop import Until

Values = dict[str, object]


def _between(
    low: float, high: float | None, *, inclusive_high: bool = False
) -> Callable[[str], float]:
    """A number strictly above `low` and below `high` (or up to it, when inclusive)."""
    check = parse_float(low, high)
    top = "" if high is None else f" and {'at most' if inclusive_high else 'below'} {high:g}"

    def convert(text: str) -> float:
        value = check(text)
        if value == low or (value == high and not inclusive_high):
            raise ValueError(f"{text} is out of range (more than {low:g}{top})")
        return value

    return convert


def _names(text: str) -> list[str]:
    """--http-custom-fields: "" (as the Go tool's default) means none."""
    if not text.strip():
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ValueError(f'"{text}" is not a comma-separated list of field names (e.g. wait,retry)')
    return names


def _cron(text: str) -> CronSpec:
    from repeater.cron import parse_cron

    return parse_cron(text)


def _zone(text: str) -> str:
    from repeater.cron import load_zone

    load_zone(text)
    return text


def _until_time(text: str) -> float:
    import time

    from repeater.until import parse_until_time

    return parse_until_time(text, time.time())


# --- how the modes decide, for their --help -------------------------------------------

ADAPTIVE_RULE = """\
The interval between run starts begins at --base-interval. After each run:
  - a failed run, or one slower than --slow-threshold x the usual duration,
    doubles the interval (multiplicative increase, up to --max-interval);
  - a successful run faster than --fast-threshold x the usual duration shortens
    it by a tenth of --base-interval (additive decrease, down to --min-interval);
  - any other successful run shortens it by a tenth of --base-interval, down to
    --base-interval.
The usual duration is a moving average (weight 0.2) of successful runs' durations;
differences from it under 10ms are noise, neither slow nor fast.
When more than --failure-threshold x 10 of the last 10 runs failed, the circuit
opens: the next run waits --max-interval and is a probe (half-open). A probe that
succeeds closes the circuit and the interval restarts at --base-interval; one that
fails keeps it open for another --max-interval."""

LOAD_RULE = """\
After each run the interval to the next run's start is --base-interval times
the highest of three ratios (1.0 means exactly on target):
  whole-host CPU use / --target-cpu (CPU use since the previous run started),
  whole-host memory use / --target-memory,
  1-minute load average per core / --target-load,
kept within --min-interval and --max-interval (by default a tenth of and ten
times --base-interval). A busy host stretches the interval; an idle one shrinks it."""

BACKOFF_RULE = """\
After each run rpr waits before starting the next: after the n-th failed run in a
row it waits the strategy's n-th delay; after a successful run the sequence starts
again (it waits the first delay). rpr stops cleanly after --attempts runs."""

# --- options of one mode ----------------------------------------------------------------

CRON_OPTIONS = [
    Option(
        "cron",
        "--cron",
        convert=_cron,
        metavar="EXPR",
        help="cron expression: 5 fields, or 6 with seconds first; names (MON-FRI, JAN), "
        "lists, ranges, steps; @yearly @monthly @weekly @daily @hourly",
    ),
    Option(
        "timezone",
        "--timezone",
        "--tz",
        convert=_zone,
        default="UTC",
        metavar="ZONE",
        help="IANA time zone the expression is read in",
    ),
]
CRON_NOTES = """\
With --show-next and no command, print the next N times (default 5) and exit:
  rpr cron --cron '0 9 * * MON-FRI' --tz Europe/London --show-next 5
Daylight saving, as Vixie cron and cronie: a job with * at the start of its minute
or hour field follows the clock (times skipped by a jump forward do not run; times
shown twice run twice). Any other job runs at fixed times: a time skipped by a
jump forward runs once, at the jump; a time shown twice runs only the first time.
A matching time that passes while a run is still going is skipped and counted.
"""

_BASE_INTERVAL = Option(
    "base_interval",
    "--base-interval",
    "-b",
    convert=positive_duration,
    metavar="DUR",
    help="the interval to start from",
)
_SHOW_METRICS = Option(
    "show_metrics",
    "--show-metrics",
    "-m",
    help="after each run, print the figures the interval follows (stderr)",
)

ADAPTIVE_OPTIONS = [
    _BASE_INTERVAL,
    Option(
        "min_interval",
        "--min-interval",
        convert=positive_duration,
        default=0.1,
        metavar="DUR",
        help="shortest interval",
    ),
    Option(
        "max_interval",
        "--max-interval",
        convert=positive_duration,
        default=30.0,
        metavar="DUR",
        help="longest interval, and the wait while the circuit is open",
    ),
    Option(
        "slow_threshold",
        "--slow-threshold",
        convert=_between(1.0, None),
        default="2.0",
        metavar="X",
        help="a run over X times the usual duration is slow (X > 1)",
    ),
    Option(
        "fast_threshold",
        "--fast-threshold",
        convert=_between(0.0, 1.0),
        default="0.5",
        metavar="X",
        help="a run under X times the usual duration is fast (0 < X < 1)",
    ),
    Option(
        "failure_threshold",
        "--failure-threshold",
        convert=_between(0.0, 1.0, inclusive_high=True),
        default="0.3",
        metavar="X",
        help="open the circuit when the failed share of the last 10 runs exceeds X",
    ),
    _SHOW_METRICS,
]

LOAD_OPTIONS = [
    _BASE_INTERVAL,
    Option(
        "target_cpu",
        "--target-cpu",
        convert=_between(0.0, 100.0, inclusive_high=True),
        default="70",
        metavar="PCT",
        help="whole-host CPU use to aim for, in percent",
    ),
    Option(
        "target_memory",
        "--target-memory",
        convert=_between(0.0, 100.0, inclusive_high=True),
        default="80",
        metavar="PCT",
        help="whole-host memory use to aim for, in percent",
    ),
    Option(
        "target_load",
        "--target-load",
        convert=_between(0.0, None),
        default="1.0",
        metavar="X",
        help="1-minute load average per core to aim for",
    ),
    Option(
        "min_interval",
        "--min-interval",
        convert=positive_duration,
        metavar="DUR",
        help="shortest interval (default a tenth of --base-interval)",
    ),
    Option(
        "max_interval",
        "--max-interval",
        convert=positive_duration,
        metavar="DUR",
        help="longest interval (default ten times --base-interval)",
    ),
    _SHOW_METRICS,
]

_ATTEMPTS = Option(
    "attempts",
    "--attempts",
    "-a",
    convert=parse_int(1),
    default=3,
    metavar="N",
    help="stop after N runs",
)
# The backoff modes, their parameters as declared in patience.backoff (the first one, the
# base delay or the increment, required as in the Go tool), and the Go tool's short flags.
BACKOFF_MODES = ("exponential", "linear", "fibonacci", "polynomial", "decorrelated-jitter")
SHORT_FLAGS = {
    "base_delay": ("-bd",),
    "max_delay": ("-md",),
    "increment": ("-inc",),
    "exponent": ("-exp",),
}


def backoff_options(name: str) -> list[Option]:
    """A backoff mode's options: the strategy's parameters, then --attempts."""
    params = DECLARATIONS[name].params
    return [
        *(param_option(p, *SHORT_FLAGS.get(p.name, ()), required=p is params[0]) for p in params),
        _ATTEMPTS,
    ]


# --- options every mode takes -----------------------------------------------------------

UNTIL_OPTIONS = [
    Option(
        "until",
        "--until",
        convert=_until_time,
        metavar="TIME",
        help="start no run after TIME (17:30, 17:30:15 or an ISO date-time; local time)",
    ),
    Option(
        "until_contains",
        "--until-contains",
        convert=str,
        metavar="STR",
        help="stop after a run whose output has a line containing STR",
    ),
    Option(
        "until_match",
        "--until-match",
        convert=str,
        metavar="RE",
        help="stop after a run whose output has a line matching RE",
    ),
    Option(
        "until_changes",
        "--until-changes",
        help="stop after a run whose output differs from the previous run's",
    ),
]
SHOW_NEXT_OPTION = Option(
    "show_next", "--show-next", "-n", help="say when the next run is due (stderr)"
)
HTTP_OPTIONS = [
    Option(
        "http_aware",
        "--http-aware",
        help="honour a server's retry hint in the output (Retry-After, X-RateLimit-*, JSON)",
    ),
    Option(
        "http_min_delay",
        "--http-min-delay",
        convert=parse_duration,
        default=1.0,
        metavar="DUR",
        help="wait at least DUR when a hint is found",
    ),
    Option(
        "http_max_delay",
        "--http-max-delay",
        convert=parse_duration,
        default=1800.0,
        metavar="DUR",
        help="wait at most DUR, whatever the hint",
    ),
    Option(
        "http_parse_headers",
        "--http-parse-headers",
        default=True,
        negatable=True,
        help="read hints from HTTP headers",
    ),
    Option("http_no_parse_headers", "--http-no-parse-headers", help="ignore HTTP headers"),
    Option(
        "http_parse_json",
        "--http-parse-json",
        default=True,
        negatable=True,
        help="read hints from JSON fields",
    ),
    Option("http_no_parse_json", "--http-no-parse-json", help="ignore JSON fields"),
    Option(
        "http_trust_client",
        "--http-trust-client",
        help="also honour hints in 4xx responses other than 429 and 403",
    ),
    Option(
        "http_custom_fields",
        "--http-custom-fields",
        convert=_names,
        metavar="A,B",
        help="more JSON fields that hold a retry delay in seconds",
    ),
]

# --- builders -----------------------------------------------------------------------------


def _number(v: Values, dest: str) -> float:
    """An option's value as a float: given (converted) or its default (kept as text)."""
    return float(str(v[dest]))


def _refuse_fixed_rate_options(v: Values, mode: str) -> None:
    """--every, --jitter and --on-overrun shape fixed-rate modes only; say so, not ignore."""
    for dest, flag in (("every", "--every"), ("jitter", "--jitter")):
        if v.get(dest) is not None:
            raise UsageError(f"{mode}: {flag} does not apply to {mode} (see rpr {mode} --help)")
    if v.get("on_overrun") not in (None, "skip"):
        raise UsageError(f"{mode}: --on-overrun does not apply to {mode} (see rpr {mode} --help)")


def _in_order(mode: str, *bounds: tuple[str, float]) -> None:
    """Refuse durations out of order, e.g. --base-interval above --max-interval."""
    from itertools import pairwise

    for (low_flag, low), (high_flag, high) in pairwise(bounds):
        if low > high:
            raise UsageError(
                f"{mode}: {low_flag} {format_duration(low)} is above {high_flag} "
                f"{format_duration(high)}"
            )


def _report(v: Values) -> Callable[[str], None] | None:
    if not v["show_metrics"]:
        return None
    from repeater.output import err

    return err


def build_cron(v: Values) -> Schedule:
    import time

    from repeater.cron import Cron, CronSpec, CronTimes, load_zone

    _refuse_fixed_rate_options(v, "cron")
    spec = v["cron"]
    assert isinstance(spec, CronSpec)
    return Cron(CronTimes(spec, load_zone(str(v["timezone"]))), time.time)


def build_adaptive(v: Values) -> Schedule:
    from repeater.adaptive import Adaptive

    _refuse_fixed_rate_options(v, "adaptive")
    base, lo, hi = (_number(v, d) for d in ("base_interval", "min_interval", "max_interval"))
    _in_order("adaptive", ("--min-interval", lo), ("--base-interval", base), ("--max-interval", hi))
    return Adaptive(
        base,
        lo,
        hi,
        slow_threshold=_number(v, "slow_threshold"),
        fast_threshold=_number(v, "fast_threshold"),
        failure_threshold=_number(v, "failure_threshold"),
        immediate=bool(v["immediate"]),
        report=_report(v),
    )


def build_load_adaptive(v: Values) -> Schedule:
    from patience.hostload import HostLoad
    from repeater.load_adaptive import LoadAdaptive

    _refuse_fixed_rate_options(v, "load-adaptive")
    base = _number(v, "base_interval")
    lo = _number(v, "min_interval") if v["min_interval"] is not None else base / 10
    hi = _number(v, "max_interval") if v["max_interval"] is not None else base * 10
    _in_order(
        "load-adaptive",
        ("--min-interval", lo),
        ("--base-interval", base),
        ("--max-interval", hi),
    )
    return LoadAdaptive(
        base,
        HostLoad(),
        target_cpu=_number(v, "target_cpu"),
        target_memory=_number(v, "target_memory"),
        target_load=_number(v, "target_load"),
        min_interval=lo,
        max_interval=hi,
        immediate=bool(v["immediate"]),
        report=_report(v),
    )


def backoff_builder(name: str) -> Callable[[Values], Schedule]:
    """The builder of the backoff mode `name`: the strategy's own options, its delays."""

    def build(v: Values) -> Schedule:
        from patience.backoff import make_strategy
        from repeater.backoff_schedules import Backoff

        _refuse_fixed_rate_options(v, name)
        options = [o for o in backoff_options(name) if o.dest != "attempts"]
        params = {o.dest: _number(v, o.dest) for o in options}
        first = options[0]  # --base-delay, or --increment for linear
        _in_order(name, (first.long, params[first.dest]), ("--max-delay", params["max_delay"]))
        return Backoff(
            make_strategy(name, **params),
            attempts=int(str(v["attempts"])),
            immediate=bool(v["immediate"]),
        )

    return build


def cron_preview(parsed: Parsed) -> int:
    """`rpr cron --cron EXPR --show-next [N]` without a command: print N times and exit."""
    import sys
    import time

    from patience.exits import ExitStatus
    from repeater.cron import CronSpec, CronTimes, load_zone

    v = parsed.values
    spec = v["cron"]
    if not isinstance(spec, CronSpec):
        raise UsageError("cron: --cron is required (see rpr cron --help)")
    if len(parsed.positionals) > 1:
        raise UsageError(f"cron: unexpected argument {parsed.positionals[1]!r} after --show-next")
    try:
        count = parse_int(1, 1000)(parsed.positionals[0]) if parsed.positionals else 5
    except ValueError as exc:
        raise UsageError(f"cron: --show-next: {exc}") from None
    times = CronTimes(spec, load_zone(str(v["timezone"])))
    lines = [times.describe(t) + "\n" for t in times.next_times(time.time(), count)]
    sys.stdout.write("".join(lines))
    return ExitStatus.OK


# --- the shared options, applied to whichever mode was built -------------------------------


def wrap_schedule(
    schedule: Schedule, parsed: Parsed, mode: str
) -> tuple[Schedule, HintReader | None]:
    """Add --http-aware and --show-next around a mode's schedule; return the schedule and
    what reads the hints from each run's output (None without --http-aware)."""
    import time

    v = parsed.values
    describe = _describe(schedule) if v["show_next"] else None
    hints = None
    if v["http_aware"]:
        from repeater.http_timing import HintReader, HttpAware

        lo, hi = _number(v, "http_min_delay"), _number(v, "http_max_delay")
        _in_order(mode, ("--http-min-delay", lo), ("--http-max-delay", hi))
        if int(str(v["parallel"])) > 1:
            raise UsageError(
                f"{mode}: --http-aware waits for each run's output; "
                "it cannot be combined with --parallel"
            )
        fields = v["http_custom_fields"]
        hints = HintReader(
            time.time,
            parse_headers=_switch(parsed, "headers", mode),
            parse_json=_switch(parsed, "json", mode),
            extra_fields=fields if isinstance(fields, list) else [],
            trust_client=bool(v["http_trust_client"]),
        )
        schedule = HttpAware(schedule, lo, hi)
    else:
        given = [o.long for o in HTTP_OPTIONS if o.dest in parsed.explicit]
        if given:
            raise UsageError(f"{mode}: {given[0]} needs --http-aware")
    if describe is not None:
        from repeater.output import err
        from repeater.show_next import ShowNext

        schedule = ShowNext(schedule, err, time.time, describe)
    return schedule, hints


def _describe(schedule: Schedule) -> Callable[[float], str]:
    """How --show-next writes a time: in the cron time zone for cron, else local."""
    from repeater.cron import Cron
    from repeater.show_next import local_time

    return schedule.times.describe if isinstance(schedule, Cron) else local_time


def _switch(parsed: Parsed, what: str, mode: str) -> bool:
    """--http-parse-X (default on; also --no-http-parse-X) against --http-no-parse-X."""
    on, off = f"http_parse_{what}", f"http_no_parse_{what}"
    if not parsed.values[off]:
        return bool(parsed.values[on])
    if on in parsed.explicit and parsed.values[on]:
        raise UsageError(
            f"{mode}: --http-parse-{what} and --http-no-parse-{what} contradict each other"
        )
    return False


def until_conditions(v: Values, mode: str) -> list[Until]:
    """The --until-contains/--until-match/--until-changes conditions the user asked for."""
    conditions: list[Until] = []
    if v["until_contains"] is None and v["until_match"] is None and not v["until_changes"]:
        return conditions
    import re

    from patience.conditions import PatternError, compile_pattern
    from repeater.until import UntilChanges, UntilMatch

    ci = bool(v["case_insensitive"])
    try:
        if isinstance(text := v["until_contains"], str):
            conditions.append(UntilMatch(compile_pattern(re.escape(text), "--until-contains", ci)))
        if isinstance(text := v["until_match"], str):
            conditions.append(UntilMatch(compile_pattern(text, "--until-match", ci)))
    except PatternError as exc:
        raise UsageError(f"{mode}: {exc}") from None
    if v["until_changes"]:
        conditions.append(UntilChanges())
    return conditions


def until_deadline(v: Values, deadline: float | None) -> float | None:
    """The earlier of the --for deadline and --until TIME, on the monotonic clock."""
    until = v["until"]
    if not isinstance(until, float):
        return deadline
    import time

    at = time.monotonic() + (until - time.time())
    return at if deadline is None else min(deadline, at)
