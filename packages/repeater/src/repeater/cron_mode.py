"""`rpr cron`: its options and help notes, its schedule, `--show-next` without a command
(print the next times and exit), and the schedule it tells patience-daemon.

Importing this module costs nothing at start-up: repeater.cron is imported when used.
"""

from __future__ import annotations

from patience.cliparse import Option, Parsed, UsageError, parse_int
from repeater.mode_checks import refuse_fixed_rate_options
from repeater.modes import ModeParts

__all__ = [
    "CRON_AHEAD",
    "CRON_NOTES",
    "CRON_OPTIONS",
    "build_cron",
    "cron_preview",
    "daemon_schedule",
    "parts",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.settings.daemon import DaemonSchedule
    from repeater.cron import CronSpec, CronTimes
    from repeater.schedules import Schedule

CRON_AHEAD = 64  # runs of a cron schedule looked at for its longest gap (daemon_schedule)


def _cron(text: str) -> CronSpec:
    from repeater.cron import parse_cron

    return parse_cron(text)


def _zone(text: str) -> str:
    from repeater.cron import load_zone

    load_zone(text)
    return text


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


def _times(parsed: Parsed) -> CronTimes:
    """The times --cron matches, in --timezone; a usage error without --cron."""
    from repeater.cron import CronSpec, CronTimes, load_zone

    spec = parsed.values["cron"]
    if not isinstance(spec, CronSpec):
        raise UsageError("cron: --cron is required (see rpr cron --help)")
    return CronTimes(spec, load_zone(parsed.text("timezone") or "UTC"))


def build_cron(parsed: Parsed) -> Schedule:
    import time

    from repeater.cron import Cron

    refuse_fixed_rate_options(parsed, "cron")
    return Cron(_times(parsed), time.time)


def cron_preview(parsed: Parsed) -> int:
    """`rpr cron --cron EXPR --show-next [N]` without a command: print N times and exit."""
    import sys
    import time

    from patience.exits import ExitStatus

    times = _times(parsed)
    if len(parsed.positionals) > 1:
        raise UsageError(f"cron: unexpected argument {parsed.positionals[1]!r} after --show-next")
    try:
        count = parse_int(1, 1000)(parsed.positionals[0]) if parsed.positionals else 5
    except ValueError as exc:
        raise UsageError(f"cron: --show-next: {exc}") from None
    lines = [times.describe(t) + "\n" for t in times.next_times(time.time(), count)]
    sys.stdout.write("".join(lines))
    return ExitStatus.OK


def daemon_schedule(parsed: Parsed) -> DaemonSchedule:
    """A cron schedule with, as its interval, the longest gap between its next CRON_AHEAD
    runs: how long the daemon's missed-schedule alert waits (docs/alerting.md)."""
    import time
    from itertools import pairwise

    from patience.settings.daemon import DaemonSchedule

    times = _times(parsed).next_times(time.time(), CRON_AHEAD)
    gap = max(later - earlier for earlier, later in pairwise(times))
    return DaemonSchedule("cron", interval=gap)


def parts(name: str) -> ModeParts:
    """`rpr cron`'s parts (repeater.modes loads them when the mode is used)."""
    return ModeParts(
        build_cron, CRON_OPTIONS, notes=CRON_NOTES, preview=cron_preview, announce=daemon_schedule
    )
