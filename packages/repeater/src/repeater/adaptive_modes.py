"""`rpr adaptive` and `rpr load-adaptive`: their options, the rule each follows (as their
help states it) and their schedules (repeater.adaptive, repeater.load_adaptive).

Importing this module costs nothing at start-up: each builder imports its schedule.
"""

from __future__ import annotations

from patience.cliparse import Option, Parsed, parse_float
from patience.durations import positive_duration
from repeater.mode_checks import in_order, refuse_fixed_rate_options
from repeater.modes import ModeParts

__all__ = [
    "ADAPTIVE_OPTIONS",
    "ADAPTIVE_RULE",
    "LOAD_OPTIONS",
    "LOAD_RULE",
    "build_adaptive",
    "build_load_adaptive",
    "parts",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.schedules import Schedule


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
        default=2.0,
        metavar="X",
        help="a run over X times the usual duration is slow (X > 1)",
    ),
    Option(
        "fast_threshold",
        "--fast-threshold",
        convert=_between(0.0, 1.0),
        default=0.5,
        metavar="X",
        help="a run under X times the usual duration is fast (0 < X < 1)",
    ),
    Option(
        "failure_threshold",
        "--failure-threshold",
        convert=_between(0.0, 1.0, inclusive_high=True),
        default=0.3,
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
        default=70.0,
        metavar="PCT",
        help="whole-host CPU use to aim for, in percent",
    ),
    Option(
        "target_memory",
        "--target-memory",
        convert=_between(0.0, 100.0, inclusive_high=True),
        default=80.0,
        metavar="PCT",
        help="whole-host memory use to aim for, in percent",
    ),
    Option(
        "target_load",
        "--target-load",
        convert=_between(0.0, None),
        default=1.0,
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


def _report(parsed: Parsed) -> Callable[[str], None] | None:
    if not parsed.flag("show_metrics"):
        return None
    from repeater.output import err

    return err


def build_adaptive(parsed: Parsed) -> Schedule:
    from repeater.adaptive import Adaptive

    refuse_fixed_rate_options(parsed, "adaptive")
    base, lo, hi = (parsed.number(d) for d in ("base_interval", "min_interval", "max_interval"))
    in_order("adaptive", ("--min-interval", lo), ("--base-interval", base), ("--max-interval", hi))
    return Adaptive(
        base,
        lo,
        hi,
        slow_threshold=parsed.number("slow_threshold"),
        fast_threshold=parsed.number("fast_threshold"),
        failure_threshold=parsed.number("failure_threshold"),
        immediate=parsed.flag("immediate"),
        report=_report(parsed),
    )


def build_load_adaptive(parsed: Parsed) -> Schedule:
    from patience.hostload import HostLoad
    from repeater.load_adaptive import LoadAdaptive

    refuse_fixed_rate_options(parsed, "load-adaptive")
    base = parsed.number("base_interval")
    lo = parsed.maybe_number("min_interval") or base / 10
    hi = parsed.maybe_number("max_interval") or base * 10
    in_order(
        "load-adaptive",
        ("--min-interval", lo),
        ("--base-interval", base),
        ("--max-interval", hi),
    )
    return LoadAdaptive(
        base,
        HostLoad(),
        target_cpu=parsed.number("target_cpu"),
        target_memory=parsed.number("target_memory"),
        target_load=parsed.number("target_load"),
        min_interval=lo,
        max_interval=hi,
        immediate=parsed.flag("immediate"),
        report=_report(parsed),
    )


def parts(name: str) -> ModeParts:
    """The parts of `rpr adaptive` or `rpr load-adaptive` (repeater.modes loads them when
    the mode is used)."""
    if name == "adaptive":
        return ModeParts(build_adaptive, ADAPTIVE_OPTIONS, notes=ADAPTIVE_RULE + "\n")
    return ModeParts(build_load_adaptive, LOAD_OPTIONS, notes=LOAD_RULE + "\n")
