"""Cron expressions against known next times, daylight-saving changes, and the schedule
built on them, with the wall clock injected."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from repeater.cron import Cron, CronError, CronTimes, load_zone, parse_cron
from repeater.schedules import Outcome

NY = "America/New_York"
LONDON = "Europe/London"


def at(local: str, tz: str = "UTC") -> float:
    """The instant of a local time; `local` may end in `+fold` for the second occurrence."""
    text, _, fold = local.partition("+")
    return (
        datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(tz), fold=1 if fold else 0).timestamp()
    )


def times(expr: str, start: str, n: int, tz: str = "UTC") -> list[str]:
    cron = CronTimes(parse_cron(expr), load_zone(tz))
    return [cron.describe(t) for t in cron.next_times(at(start, tz), n)]


@pytest.mark.parametrize(
    ("expr", "start", "expected"),
    [
        # Friday evening: the next working-hours quarter is Monday 09:00.
        (
            "*/15 9-17 * * MON-FRI",
            "2026-05-08 17:50",
            ["2026-05-11 09:00:00", "2026-05-11 09:15:00"],
        ),
        ("0 0 1 JAN *", "2026-05-08 00:00", ["2027-01-01 00:00:00", "2028-01-01 00:00:00"]),
        ("0 8,12,18 * * *", "2026-05-08 12:00", ["2026-05-08 18:00:00", "2026-05-09 08:00:00"]),
        ("0-30/10 3 * * *", "2026-05-08 03:05", ["2026-05-08 03:10:00", "2026-05-08 03:20:00"]),
        ("0 0 * * SUN", "2026-05-08 00:00", ["2026-05-10 00:00:00", "2026-05-17 00:00:00"]),
        ("0 0 * * 7", "2026-05-08 00:00", ["2026-05-10 00:00:00", "2026-05-17 00:00:00"]),
        # day-of-month and day-of-week both restricted: either matches (cron's rule).
        ("0 0 13 * FRI", "2026-02-01 00:00", ["2026-02-06 00:00:00", "2026-02-13 00:00:00"]),
        ("@yearly", "2026-05-08 00:00", ["2027-01-01 00:00:00", "2028-01-01 00:00:00"]),
        ("@annually", "2026-05-08 00:00", ["2027-01-01 00:00:00", "2028-01-01 00:00:00"]),
        ("@monthly", "2026-05-08 00:00", ["2026-06-01 00:00:00", "2026-07-01 00:00:00"]),
        ("@weekly", "2026-05-08 00:00", ["2026-05-10 00:00:00", "2026-05-17 00:00:00"]),
        ("@daily", "2026-05-08 10:00", ["2026-05-09 00:00:00", "2026-05-10 00:00:00"]),
        ("@midnight", "2026-05-08 10:00", ["2026-05-09 00:00:00", "2026-05-10 00:00:00"]),
        ("@hourly", "2026-05-08 10:00", ["2026-05-08 11:00:00", "2026-05-08 12:00:00"]),
        ("@HOURLY", "2026-05-08 10:30", ["2026-05-08 11:00:00", "2026-05-08 12:00:00"]),
        # A leading seconds field.
        ("*/20 * * * * *", "2026-05-08 10:00:05", ["2026-05-08 10:00:20", "2026-05-08 10:00:40"]),
        ("30 0 12 * * *", "2026-05-08 12:00:30", ["2026-05-09 12:00:30", "2026-05-10 12:00:30"]),
        ("0 0 29 2 *", "2026-01-01 00:00", ["2028-02-29 00:00:00", "2032-02-29 00:00:00"]),
    ],
)
def test_known_next_times(expr: str, start: str, expected: list[str]) -> None:
    assert times(expr, start, len(expected)) == [e + "+00:00 UTC" for e in expected]


def test_next_is_strictly_after_a_matching_instant() -> None:
    # Exactly one run per matching time: asking again from a due time gives the next one.
    assert times("*/5 * * * * *", "2026-05-08 10:00:05", 1) == ["2026-05-08 10:00:10+00:00 UTC"]
    assert times("* * * * *", "2026-05-08 10:00:00.5", 1) == ["2026-05-08 10:01:00+00:00 UTC"]


# New York: 2026-03-08 02:00 EST jumps to 03:00 EDT; 2026-11-01 02:00 EDT goes back to 01:00 EST.
# London: 2026-03-29 01:00 GMT jumps to 02:00 BST; 2026-10-25 02:00 BST goes back to 01:00 GMT.


def test_new_york_spring_forward_fixed_time_runs_once_at_the_jump() -> None:
    assert times("30 2 * * *", "2026-03-07 12:00", 3, NY) == [
        "2026-03-08 03:00:00-04:00 EDT",
        "2026-03-09 02:30:00-04:00 EDT",
        "2026-03-10 02:30:00-04:00 EDT",
    ]


def test_spring_forward_times_of_one_jump_share_a_single_run() -> None:
    assert times("0,15,30,45 2 * * *", "2026-03-08 01:00", 2, NY) == [
        "2026-03-08 03:00:00-04:00 EDT",
        "2026-03-09 02:00:00-04:00 EDT",
    ]


def test_new_york_spring_forward_wildcard_follows_the_clock() -> None:
    assert times("*/30 * * * *", "2026-03-08 01:00", 4, NY) == [
        "2026-03-08 01:30:00-05:00 EST",
        "2026-03-08 03:00:00-04:00 EDT",
        "2026-03-08 03:30:00-04:00 EDT",
        "2026-03-08 04:00:00-04:00 EDT",
    ]


def test_new_york_fall_back_fixed_time_runs_once() -> None:
    assert times("30 1 * * *", "2026-10-31 12:00", 3, NY) == [
        "2026-11-01 01:30:00-04:00 EDT",
        "2026-11-02 01:30:00-05:00 EST",
        "2026-11-03 01:30:00-05:00 EST",
    ]


def test_new_york_fall_back_wildcard_runs_in_both_passes() -> None:
    assert times("*/30 * * * *", "2026-11-01 00:10", 6, NY) == [
        "2026-11-01 00:30:00-04:00 EDT",
        "2026-11-01 01:00:00-04:00 EDT",
        "2026-11-01 01:30:00-04:00 EDT",
        "2026-11-01 01:00:00-05:00 EST",
        "2026-11-01 01:30:00-05:00 EST",
        "2026-11-01 02:00:00-05:00 EST",
    ]


def test_fall_back_from_late_in_the_first_pass() -> None:
    # 01:50 EDT: a wildcard job's next run is 01:00 EST, ten minutes later in real time.
    assert times("*/30 * * * *", "2026-11-01 01:50", 1, NY) == ["2026-11-01 01:00:00-05:00 EST"]
    assert times("30 1 * * *", "2026-11-01 01:50", 1, NY) == ["2026-11-02 01:30:00-05:00 EST"]


def test_fall_back_starting_in_the_second_pass() -> None:
    assert times("*/30 * * * *", "2026-11-01 01:10+fold", 1, NY) == [
        "2026-11-01 01:30:00-05:00 EST"
    ]
    # A fixed time already shown in the first pass does not run again.
    assert times("30 1 * * *", "2026-11-01 01:10+fold", 1, NY) == ["2026-11-02 01:30:00-05:00 EST"]


def test_london_spring_forward() -> None:
    assert times("30 1 * * *", "2026-03-28 12:00", 2, LONDON) == [
        "2026-03-29 02:00:00+01:00 BST",
        "2026-03-30 01:30:00+01:00 BST",
    ]
    assert times("@hourly", "2026-03-28 23:30", 3, LONDON) == [
        "2026-03-29 00:00:00+00:00 GMT",
        "2026-03-29 02:00:00+01:00 BST",
        "2026-03-29 03:00:00+01:00 BST",
    ]


def test_london_fall_back() -> None:
    assert times("@hourly", "2026-10-25 00:10", 4, LONDON) == [
        "2026-10-25 01:00:00+01:00 BST",
        "2026-10-25 01:00:00+00:00 GMT",
        "2026-10-25 02:00:00+00:00 GMT",
        "2026-10-25 03:00:00+00:00 GMT",
    ]
    assert times("15 1 * * *", "2026-10-24 12:00", 2, LONDON) == [
        "2026-10-25 01:15:00+01:00 BST",
        "2026-10-26 01:15:00+00:00 GMT",
    ]


def test_seconds_field_across_a_jump() -> None:
    # A fixed minute (02:30) with every tenth second: skipped by the jump, so one run at it.
    assert times("*/10 30 2 * * *", "2026-03-08 01:59:00", 2, NY) == [
        "2026-03-08 03:00:00-04:00 EDT",
        "2026-03-09 02:30:00-04:00 EDT",
    ]


ZONES = st.sampled_from([NY, LONDON, "Australia/Lord_Howe", "UTC"])
# Instants around 2026's transitions in those zones, to the second.
AROUND = st.integers(int(at("2026-01-01 00:00")), int(at("2027-01-01 00:00")))


def _matches_every_quarter(t: float, tz: str) -> bool:
    return datetime.fromtimestamp(t, ZoneInfo(tz)).minute % 15 == 0


@given(ZONES, AROUND)
def test_wildcard_runs_at_the_first_instant_the_clock_shows_a_match(tz: str, t0: int) -> None:
    cron = CronTimes(parse_cron("*/15 * * * *"), load_zone(tz))
    got = cron.next_after(t0)
    first = (t0 // 60 + 1) * 60
    while not _matches_every_quarter(first, tz):
        first += 60
    assert got == first


@given(ZONES, AROUND)
def test_fixed_time_runs_once_per_day_at_or_after_its_wall_time(tz: str, t0: int) -> None:
    cron = CronTimes(parse_cron("30 1 * * *"), load_zone(tz))
    runs = cron.next_times(t0, 3)
    assert runs == sorted(runs) and runs[0] > t0
    for run in runs:
        local = datetime.fromtimestamp(run, ZoneInfo(tz))
        # At 01:30 itself, or at 02:00 BST when London's jump skips it.
        assert (local.hour, local.minute) in ((1, 30), (2, 0))
        assert (local.hour, local.minute) == (1, 30) or tz == LONDON
        assert local.fold == 0
    days = {datetime.fromtimestamp(r, ZoneInfo(tz)).date() for r in runs}
    assert len(days) == 3


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 * * * *", 'minute field "61" is not valid (allowed: 0-59)'),
        ("* 24 * * *", 'hour field "24" is not valid (allowed: 0-23)'),
        ("* * 32 * *", 'day-of-month field "32" is not valid (allowed: 1-31)'),
        ("* * * FOO *", 'month field "FOO" is not valid (allowed: 1-12 or JAN-DEC)'),
        ("* * * * 8", 'day-of-week field "8" is not valid (allowed: 0-7 or SUN-SAT)'),
        ("60 * * * * *", 'second field "60" is not valid (allowed: 0-59)'),
        ("*/0 * * * *", 'minute field "*/0" is not valid'),
        ("* * * *", "has 4 fields (need 5"),
        ("* * * * * * *", "has 7 fields"),
        ("", "has 0 fields"),
        ("@reboot", "is not a known shortcut (use one of @yearly"),
        ("0 0 30 2 *", "never matches any date"),
    ],
)
def test_bad_expressions_name_the_field(expr: str, message: str) -> None:
    with pytest.raises(CronError) as exc:
        parse_cron(expr)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("name", ["Nope/Zone", "", "utc", "../etc/passwd", "Europe/"])
def test_unknown_time_zones(name: str) -> None:
    with pytest.raises(CronError, match=f'unknown time zone "{name}"'):
        load_zone(name)


class Clocks:
    """A monotonic clock and a wall clock that advance together (the wall one from `wall0`)."""

    def __init__(self, wall0: float) -> None:
        self.mono = 1000.0
        self.offset = wall0 - self.mono

    def wall(self) -> float:
        return self.mono + self.offset


def test_schedule_converts_wall_due_times_to_the_monotonic_clock() -> None:
    clocks = Clocks(at("2026-05-08 10:00:00.250"))
    s = Cron(CronTimes(parse_cron("* * * * * *"), load_zone("UTC")), clocks.wall)
    due = s.first(clocks.mono)
    assert due == pytest.approx(clocks.mono + 0.75)
    clocks.mono = due + 0.1  # the run took 100 ms
    nxt = s.next(clocks.mono, Outcome(True, 0.1, 0))
    assert nxt == pytest.approx(due + 1.0)
    assert s.skipped == 0


def test_schedule_skips_and_counts_times_missed_by_a_long_run() -> None:
    clocks = Clocks(at("2026-05-08 10:00:00"))
    s = Cron(CronTimes(parse_cron("* * * * * *"), load_zone("UTC")), clocks.wall)
    due = s.first(clocks.mono)  # 10:00:01
    clocks.mono = due + 3.5  # ran until 10:00:04.5: 02, 03 and 04 passed
    nxt = s.next(clocks.mono, Outcome(True, 3.5, 0))
    assert nxt == pytest.approx(due + 4.0)
    assert s.skipped == 3


def test_schedule_never_runs_one_matching_time_twice_when_woken_early() -> None:
    # The monotonic clock may run a little ahead of the wall clock between readings: a runner
    # woken "at" the due time still gets the following matching time, never the same one.
    clocks = Clocks(at("2026-05-08 10:00:00.900"))
    s = Cron(CronTimes(parse_cron("* * * * * *"), load_zone("UTC")), clocks.wall)
    due = s.first(clocks.mono)
    clocks.offset -= 0.05  # the wall clock now reads 50 ms behind
    clocks.mono = due + 0.001
    nxt = s.next(clocks.mono, Outcome(True, 0.001, 0))
    assert nxt is not None and nxt - clocks.mono > 0.9
