"""End to end: the --until stop conditions on every mode, with the real executable."""

from __future__ import annotations

import time
from datetime import datetime

import pytest

from modes_support import json_runs, usage_error
from tools import rpr

NTH = 'echo "run $RPR_ITERATION"; if [ "$RPR_ITERATION" -ge 3 ]; then echo READY; fi'


@pytest.mark.parametrize(
    "mode",
    [
        ["count", "--times", "10"],
        ["interval", "-e", "20ms", "--times", "10"],
        ["cron", "--cron", "* * * * * *", "--times", "10"],
        ["adaptive", "-b", "20ms", "--min-interval", "10ms", "--times", "10"],
        ["load-adaptive", "-b", "20ms", "--times", "10"],
        ["exponential", "-bd", "10ms", "-a", "10"],
        ["linear", "-inc", "10ms", "-a", "10"],
        ["fibonacci", "-bd", "10ms", "-a", "10"],
        ["polynomial", "-bd", "10ms", "-a", "10"],
        ["decorrelated-jitter", "-bd", "10ms", "-a", "10"],
    ],
)
def test_until_contains_on_every_mode(mode: list[str]) -> None:
    proc = rpr(*mode, "--until-contains", "READY", "--", "sh", "-c", NTH)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("run ") == 3


def test_until_contains_is_literal_and_can_ignore_case() -> None:
    cmd = ["sh", "-c", 'if [ "$RPR_ITERATION" -ge 2 ]; then echo "a.b ready"; else echo axb; fi']
    proc = rpr("count", "--times", "5", "--until-contains", "A.B", "--case-insensitive", "--", *cmd)
    assert proc.stdout.count("\n") == 2
    proc = rpr("count", "--times", "5", "--until-contains", "a.b", "--", *cmd)
    assert proc.stdout.count("\n") == 2
    proc = rpr("count", "--times", "5", "--until-contains", "A.B", "--", *cmd)
    assert proc.stdout.count("\n") == 5


def test_until_match_reads_stderr_too() -> None:
    proc = rpr(
        "count",
        "--times",
        "9",
        "--until-match",
        r"^n=[4-9]$",
        "--",
        "sh",
        "-c",
        'echo "n=$RPR_ITERATION" >&2',
    )
    assert proc.returncode == 0
    assert proc.stderr.count("n=") == 4


def test_until_changes_stops_when_the_output_differs() -> None:
    _, summary, proc = json_runs(
        "count",
        "--times",
        "9",
        "--until-changes",
        "--json",
        "--",
        "sh",
        "-c",
        "echo $((RPR_ITERATION / 3))",
    )
    assert proc.returncode == 0
    assert summary["runs"] == 3  # outputs 0, 0, 1


def test_until_changes_with_large_output() -> None:
    cmd = ["sh", "-c", 'head -c 5000000 /dev/zero; [ "$RPR_ITERATION" -ge 3 ] && echo x; true']
    _, summary, proc = json_runs(
        "count", "--times", "6", "--until-changes", "--quiet", "--json", "--", *cmd
    )
    assert proc.returncode == 0, proc.stderr
    assert summary["runs"] == 3


def test_until_a_wall_clock_time() -> None:
    target = datetime.fromtimestamp(time.time() + 1.5).isoformat(timespec="milliseconds")
    start = time.monotonic()
    _, summary, proc = json_runs(
        "interval", "-e", "200ms", "--until", target, "--json", "--", "true"
    )
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stderr
    assert 6 <= summary["runs"] <= 9
    assert took < 3.5


def test_until_a_time_of_day() -> None:
    target = datetime.fromtimestamp(time.time() + 2).strftime("%H:%M:%S")
    start = time.monotonic()
    proc = rpr(
        "count", "--times", "1000", "--every", "100ms", "--until", target, "--quiet", "--", "true"
    )
    assert proc.returncode == 0, proc.stderr
    assert 0.9 < time.monotonic() - start < 4


def test_until_time_and_for_the_earlier_wins() -> None:
    target = datetime.fromtimestamp(time.time() + 30).isoformat()
    start = time.monotonic()
    proc = rpr(
        "interval", "-e", "100ms", "--for", "500ms", "--until", target, "--quiet", "--", "true"
    )
    assert proc.returncode == 0
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--until", "soon"], ['--until: "soon" is not a time (try 17:30']),
        (["--until", "25:61"], ['--until: "25:61" is not a time of day']),
        (["--until", "2001-01-01T00:00"], ['--until: "2001-01-01T00:00" is in the past']),
        (["--until-match", "(unclosed"], ["--until-match: invalid regular expression"]),
        (["--until-contains"], ["--until-contains needs a value"]),
    ],
)
def test_until_bad_input(args: list[str], fragments: list[str]) -> None:
    assert usage_error(rpr("count", "--times", "2", *args, "--", "true"), *fragments)
