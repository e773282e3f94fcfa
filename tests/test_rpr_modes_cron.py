"""End to end: `rpr cron` with the real executable."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from modes_support import json_runs, usage_error
from tools import rpr


def test_seconds_resolution_fires_once_per_second_in_a_3_second_window() -> None:
    runs, summary, proc = json_runs(
        "cron", "--cron", "* * * * * *", "--for", "3s", "--json", "--", "true"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(runs) == 3
    starts = [r["actual_start"] for r in runs]
    # One run per whole second, each close after it: never two for one matching time.
    assert len({int(s) for s in starts}) == 3
    assert all(s - int(s) < 0.3 for s in starts)
    assert all(
        r["scheduled_start"] == pytest.approx(round(r["scheduled_start"]), abs=0.02) for r in runs
    )
    assert summary["skipped_ticks"] == 0


def test_every_other_second() -> None:
    runs, _, proc = json_runs(
        "cron", "--cron", "*/2 * * * * *", "--for", "4s", "--json", "--", "true"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(runs) == 2
    assert all(round(r["scheduled_start"]) % 2 == 0 for r in runs)


def test_a_run_longer_than_the_period_skips_the_times_it_covers() -> None:
    runs, summary, proc = json_runs(
        "cr", "--cron", "* * * * * *", "--times", "2", "--json", "--", "sleep", "1.5"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(runs) == 2
    first_end = runs[0]["actual_start"] + runs[0]["duration"]
    assert runs[1]["actual_start"] >= first_end  # never overlapping
    assert summary["skipped_ticks"] >= 1


def test_show_next_prints_the_next_times_and_exits() -> None:
    proc = rpr("cron", "--cron", "0 9 * * MON-FRI", "--tz", "Europe/London", "--show-next", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 5
    for line in lines:
        m = re.fullmatch(r"(\d{4}-\d\d-\d\d) 09:00:00\+0[01]:00 (GMT|BST)", line)
        assert m, line
        assert datetime.fromisoformat(m.group(1)).weekday() < 5
    assert lines == sorted(lines)


def test_show_next_defaults_to_five_times() -> None:
    proc = rpr("cron", "--cron", "@hourly", "-n")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5
    assert all(line.endswith(":00:00+00:00 UTC") for line in proc.stdout.splitlines())


def test_show_next_with_a_seconds_field_and_a_time_zone() -> None:
    proc = rpr(
        "cron", "--cron", "*/15 * * * * *", "--timezone", "America/New_York", "--show-next", "3"
    )
    assert proc.returncode == 0, proc.stderr
    secs = [int(line[17:19]) for line in proc.stdout.splitlines()]
    assert len(secs) == 3 and all(s % 15 == 0 for s in secs)
    assert all(line.endswith(("EST", "EDT")) for line in proc.stdout.splitlines())


def test_show_next_while_running_names_the_time_zone() -> None:
    proc = rpr(
        "cron",
        "--cron",
        "* * * * * *",
        "--tz",
        "Asia/Tokyo",
        "--times",
        "1",
        "--show-next",
        "--",
        "true",
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"rpr: next run in \d+(\.\d+)?m?s \(at .*\+09:00 JST\)", proc.stderr)


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (
            ["--cron", "61 * * * *"],
            ['--cron: "61 * * * *": minute field "61" is not valid (allowed: 0-59)'],
        ),
        (["--cron", "* * * * FUNDAY"], ['day-of-week field "FUNDAY" is not valid']),
        (["--cron", "* * * *"], ["--cron:", "has 4 fields"]),
        (["--cron", "@reboot"], ["--cron:", "not a known shortcut"]),
        (["--cron", "0 0 31 2 *"], ["--cron:", "never matches any date"]),
        (
            ["--cron", "* * * * *", "--tz", "Mars/Olympus"],
            ['--timezone: unknown time zone "Mars/Olympus"'],
        ),
        ([], ["cron: --cron is required"]),
        (["--cron", "* * * * *", "--every", "1s"], ["--every does not apply to cron"]),
        (["--cron", "* * * * *", "--jitter", "1s"], ["--jitter does not apply to cron"]),
        (["--cron", "* * * * *", "--on-overrun", "burst"], ["--on-overrun does not apply to cron"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], fragments: list[str]) -> None:
    proc = rpr("cron", *args, "--", "true")
    assert usage_error(proc, *fragments), proc.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--show-next", "0"], "--show-next: 0 is too small"),
        (["--show-next", "many"], '--show-next: "many" is not a whole number'),
        (["--show-next", "1", "2"], "unexpected argument '2'"),
    ],
)
def test_bad_show_next_counts(args: list[str], fragment: str) -> None:
    proc = rpr("cron", "--cron", "@daily", *args)
    assert usage_error(proc, fragment), proc.stderr


def test_show_next_without_cron() -> None:
    assert usage_error(rpr("cron", "--show-next", "3"), "--cron is required")


def test_parallel_lets_a_slow_run_overlap_the_next_matching_time() -> None:
    runs, summary, proc = json_runs(
        "cron",
        "--cron",
        "* * * * * *",
        "--parallel",
        "2",
        "--times",
        "2",
        "--json",
        "--",
        "sleep",
        "1.5",
    )
    assert proc.returncode == 0, proc.stderr
    first, second = sorted(r["actual_start"] for r in runs)
    assert 0.9 <= second - first <= 1.3  # the next second, while the first run still goes
    assert summary["skipped_ticks"] == 0
