"""Cron schedules: which wall-clock times an expression matches, and when each run is due.

Expressions have 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading
seconds field, with names (MON-FRI, JAN), lists, ranges and steps, or one of @yearly,
@annually, @monthly, @weekly, @daily, @midnight, @hourly. Times are read in an IANA time zone.

Daylight-saving changes follow Vixie cron and cronie, which tell two kinds of job apart:
- A job with `*` at the start of its minute or hour field (`*/5 * * * *`, `@hourly`) follows
  the clock: it runs whenever the local clock shows a matching time. Times skipped by a jump
  forward never show, so they do not run; times shown twice when the clock goes back run twice,
  an hour apart, as they really are.
- Any other job runs at particular times (`30 2 * * *`). A time skipped by a jump forward runs
  once, at the moment of the jump (all such times of one jump share that single run); a time
  shown twice runs once, the first time.
Whatever the kind, each matching moment gives exactly one run.
"""

from __future__ import annotations

from repeater.schedules import Schedule

__all__ = [
    "FIELDS",
    "SECONDS_FIELD",
    "SHORTCUTS",
    "Cron",
    "CronError",
    "CronSpec",
    "CronTimes",
    "load_zone",
    "parse_cron",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime, tzinfo

    from croniter import croniter

    from repeater.schedules import Outcome

SHORTCUTS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
FIELDS = (
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
)
SECONDS_FIELD = ("second", "0-59")


class CronError(ValueError):
    """A cron expression or time zone that cannot be used; the message says why."""


class CronSpec:
    """A checked expression: its fields (seconds first when given) and its job kind."""

    def __init__(self, text: str, fields: list[str]) -> None:
        self.text = text
        self.fields = fields
        minute, hour = fields[-5], fields[-4]
        self.follows_clock = minute.startswith("*") or hour.startswith("*")


def parse_cron(text: str) -> CronSpec:
    """Check `text` as an expression; errors name the field at fault and its allowed values."""
    from croniter import CroniterError

    stripped = text.strip()
    if stripped.startswith("@"):
        expanded = SHORTCUTS.get(stripped.lower())
        if expanded is None:
            names = ", ".join(SHORTCUTS)
            raise CronError(f'"{text}" is not a known shortcut (use one of {names})')
        stripped = expanded
    fields = stripped.split()
    if len(fields) not in (5, 6):
        raise CronError(
            f'"{text}" has {len(fields)} fields (need 5: minute hour day-of-month month '
            "day-of-week, or 6 with seconds first)"
        )
    try:
        it = _iterator(fields)
        it.get_next(float)
    except CroniterError:
        raise CronError(_blame(text, fields)) from None
    return CronSpec(text, fields)


def _iterator(fields: list[str]) -> croniter:
    from datetime import datetime

    from croniter import croniter

    return croniter(" ".join(fields), datetime(2000, 1, 1), second_at_beginning=True)


def _blame(text: str, fields: list[str]) -> str:
    """Name the first field croniter refuses on its own, or say the whole never matches."""
    from croniter import CroniterError

    names = ((SECONDS_FIELD,) if len(fields) == 6 else ()) + FIELDS
    for i, (name, allowed) in enumerate(names):
        alone = ["*"] * len(fields)
        alone[i] = fields[i]
        try:
            _iterator(alone).get_next(float)
        except CroniterError:
            return f'"{text}": {name} field "{fields[i]}" is not valid (allowed: {allowed})'
    return f'"{text}" never matches any date (check day-of-month against month)'


def load_zone(name: str) -> tzinfo:
    """The IANA time zone called `name`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(
            f'unknown time zone "{name}" (use an IANA name such as UTC, Europe/London '
            "or America/New_York)"
        ) from None


class CronTimes:
    """The instants (Unix seconds) at which a checked expression runs in time zone `tz`."""

    def __init__(self, spec: CronSpec, tz: tzinfo) -> None:
        self.spec = spec
        self.tz = tz
        self.iterator = _iterator(spec.fields)

    def next_after(self, t: float) -> float:
        """The first run strictly after instant `t`, by the daylight-saving rule above."""
        from datetime import datetime

        local = datetime.fromtimestamp(t, self.tz)
        wall = local.replace(tzinfo=None)
        in_first_pass = local.fold == 0 and self._repeated(wall)
        self.iterator.set_current(wall, force=True)
        while True:
            match = self.iterator.get_next(datetime)
            early, late = self._instants(match)
            if early == late:
                if in_first_pass and self.spec.follows_clock:
                    again = self._second_pass(wall)
                    if again is not None:
                        return again
                return early
            if early < late:  # shown twice as the clock goes back
                if early > t:
                    return early
                if self.spec.follows_clock:
                    return late
            elif not self.spec.follows_clock:  # skipped as the clock jumps forward
                jump = self._jump(late, early)
                if jump > t:
                    return jump

    def next_times(self, t: float, n: int) -> list[float]:
        """The next `n` runs after instant `t` (what --show-next prints)."""
        times = []
        for _ in range(n):
            t = self.next_after(t)
            times.append(t)
        return times

    def describe(self, t: float) -> str:
        """An instant as local time with its offset and zone abbreviation."""
        from datetime import datetime

        local = datetime.fromtimestamp(t, self.tz)
        return f"{local.isoformat(sep=' ', timespec='seconds')} {local.tzname()}"

    def _instants(self, wall: datetime) -> tuple[float, float]:
        """The instants a wall time names: equal normally, ordered when it is shown twice,
        reversed (after, before) when the clock jumps over it."""
        first = wall.replace(tzinfo=self.tz, fold=0).timestamp()
        second = wall.replace(tzinfo=self.tz, fold=1).timestamp()
        return first, second

    def _repeated(self, wall: datetime) -> bool:
        early, late = self._instants(wall)
        return early < late

    def _second_pass(self, wall: datetime) -> float | None:
        """The first match shown the second time round in the repeated hour around `wall`."""
        from datetime import datetime, timedelta

        early, late = self._instants(wall)
        self.iterator.set_current(wall - timedelta(seconds=late - early), force=True)
        while True:
            match = self.iterator.get_next(datetime)
            first, second = self._instants(match)
            if first < second:
                return second
            if match > wall:
                return None

    def _jump(self, before: float, after: float) -> float:
        """The instant the clock jumped forward, between two instants on either side of it."""
        from datetime import datetime

        lo, hi = int(before), int(after) + 1
        offset = datetime.fromtimestamp(hi, self.tz).utcoffset()
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.tz).utcoffset() == offset:
                hi = mid
            else:
                lo = mid
        return float(hi)


class Cron(Schedule):
    """Runs at the times a cron expression matches; never two runs for one matching time.

    Due times are wall-clock instants, turned into the runner's monotonic clock with `wall`
    (the wall clock, injected) each time one is computed. A matching time that passes while
    the previous run is still going is skipped and counted, as supercronic does.
    """

    def __init__(self, times: CronTimes, wall: Callable[[], float]) -> None:
        self.times = times
        self.wall = wall
        self.due_wall = 0.0
        self.skipped = 0

    def first(self, now: float) -> float:
        wall_now = self.wall()
        self.due_wall = self.times.next_after(wall_now)
        return now + (self.due_wall - wall_now)

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        wall_now = self.wall()
        due = self.times.next_after(self.due_wall)
        while due < wall_now:
            self.skipped += 1
            due = self.times.next_after(due)
        self.due_wall = due
        return now + (due - wall_now)
