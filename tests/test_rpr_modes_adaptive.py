"""End to end: `rpr adaptive` and `rpr load-adaptive` with the real executable."""

from __future__ import annotations

import re

import pytest

from modes_support import close_to, json_runs, spacings, usage_error
from tools import rpr


@pytest.mark.parametrize("name", ["adaptive", "adapt", "a"])
def test_healthy_runs_keep_the_base_interval(name: str) -> None:
    # Runs of 200 ms: steady well beyond the start-up jitter of a busy machine.
    runs, _, proc = json_runs(name, "-b", "500ms", "--times", "3", "--json", "--", "sleep", "0.2")
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.5, 0.5], slack=0.02)


def test_failures_double_the_interval() -> None:
    runs, _, proc = json_runs(
        "adaptive",
        "-b",
        "100ms",
        "--failure-threshold",
        "1",
        "--times",
        "4",
        "--json",
        "--",
        "false",
    )
    assert proc.returncode == 1
    assert close_to(spacings(runs), [0.2, 0.4, 0.8], slack=0.2)


def test_sustained_failure_opens_the_circuit_for_max_interval() -> None:
    runs, _, proc = json_runs(
        "adaptive",
        "-b",
        "100ms",
        "--max-interval",
        "1s",
        "--failure-threshold",
        "0.1",
        "--times",
        "4",
        "--json",
        "--",
        "false",
    )
    assert proc.returncode == 1
    # Two failures of ten is more than 0.1: open; each probe then waits --max-interval.
    assert close_to(spacings(runs), [0.2, 1.0, 1.0], slack=0.3)


def test_show_metrics_explains_each_change() -> None:
    proc = rpr(
        "adaptive",
        "-b",
        "100ms",
        "--times",
        "3",
        "--show-metrics",
        "--",
        "sh",
        "-c",
        'test "$RPR_ITERATION" -ne 2',
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rpr: adaptive:")]
    assert len(lines) == 3
    assert lines[0].startswith("rpr: adaptive: ok; interval 100ms")
    assert lines[1].startswith("rpr: adaptive: failed; interval 200ms")
    assert "circuit closed" in lines[2]


def test_help_documents_the_rule() -> None:
    proc = rpr("adaptive", "--help")
    assert proc.returncode == 0
    assert "doubles the interval (multiplicative increase" in proc.stdout
    assert "circuit" in proc.stdout
    assert "--failure-threshold X" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ([], ["adaptive: --base-interval is required"]),
        (["-b", "1m"], ["--base-interval 1m is above --max-interval 30s"]),
        (["-b", "50ms"], ["--min-interval 100ms is above --base-interval 50ms"]),
        (["-b", "1s", "--min-interval", "2s", "--max-interval", "1s"], ["is above"]),
        (
            ["-b", "1s", "--slow-threshold", "1"],
            ["--slow-threshold: 1 is out of range (more than 1)"],
        ),
        (["-b", "1s", "--slow-threshold", "0.5"], ["--slow-threshold: 0.5 is too small"]),
        (["-b", "1s", "--fast-threshold", "1"], ["--fast-threshold: 1 is out of range"]),
        (["-b", "1s", "--fast-threshold", "0"], ["--fast-threshold: 0 is out of range"]),
        (["-b", "1s", "--fast-threshold", "fast"], ['--fast-threshold: "fast" is not a number']),
        (["-b", "1s", "--failure-threshold", "0"], ["--failure-threshold: 0 is out of range"]),
        (["-b", "1s", "--failure-threshold", "1.5"], ["--failure-threshold: 1.5 is too large"]),
        (["-b", "0s"], ['--base-interval: "0s" must be more than zero']),
        (["-b", "5"], ['--base-interval: "5" has no unit']),
        (["-b", "1s", "--parallel", "2"], ["--parallel"]),
        (["-b", "1s", "--every", "1s"], ["--every does not apply to adaptive"]),
    ],
)
def test_adaptive_bad_input(args: list[str], fragments: list[str]) -> None:
    assert usage_error(rpr("adaptive", *args, "--", "true"), *fragments)


@pytest.mark.parametrize("name", ["load-adaptive", "load", "la"])
def test_load_adaptive_reports_the_real_host(name: str) -> None:
    proc = rpr(name, "-b", "50ms", "--times", "3", "--show-metrics", "--", "true")
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("rpr: load-adaptive:")]
    assert len(lines) == 3  # one after each run
    for line in lines:
        assert re.search(r"memory \d+%, load/core \d+\.\d\d; factor \d+\.\d\d, interval", line)
        assert re.search(r"cpu (\d+%|n/a)", line)  # n/a: no clock tick since the last reading


def test_a_host_over_target_stretches_the_interval_to_max() -> None:
    # Any real memory use is far above 0.01%: the factor is huge, the interval base x 10.
    runs, _, proc = json_runs(
        "load-adaptive",
        "-b",
        "50ms",
        "--target-memory",
        "0.01",
        "--times",
        "2",
        "--json",
        "--",
        "true",
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.5], slack=0.5)


def test_explicit_bounds() -> None:
    runs, _, proc = json_runs(
        "load-adaptive",
        "-b",
        "50ms",
        "--target-memory",
        "0.01",
        "--max-interval",
        "150ms",
        "--times",
        "2",
        "--json",
        "--",
        "true",
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.15], slack=0.15)


def test_load_adaptive_help_documents_the_rule() -> None:
    proc = rpr("load-adaptive", "--help")
    assert proc.returncode == 0
    assert "load average per core / --target-load" in proc.stdout
    assert "--target-cpu PCT" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        ([], ["load-adaptive: --base-interval is required"]),
        (["-b", "1s", "--target-cpu", "0"], ["--target-cpu: 0 is out of range"]),
        (["-b", "1s", "--target-cpu", "101"], ["--target-cpu: 101 is too large"]),
        (["-b", "1s", "--target-memory", "-5"], ["--target-memory: -5 is too small"]),
        (["-b", "1s", "--target-load", "0"], ["--target-load: 0 is out of range"]),
        (["-b", "1s", "--target-load", "high"], ['--target-load: "high" is not a number']),
        (
            ["-b", "100ms", "--min-interval", "1s"],
            ["--min-interval 1s is above --base-interval 100ms"],
        ),
        (["-b", "10s", "--max-interval", "1s"], ["--base-interval 10s is above --max-interval 1s"]),
    ],
)
def test_load_adaptive_bad_input(args: list[str], fragments: list[str]) -> None:
    assert usage_error(rpr("load-adaptive", *args, "--", "true"), *fragments)


SLOW_THIRD = ["sh", "-c", 'if [ "$RPR_ITERATION" -eq 3 ]; then sleep 0.7; else sleep 0.2; fi']


def test_a_slow_run_doubles_the_interval() -> None:
    runs, _, proc = json_runs(
        "adaptive", "-b", "800ms", "--times", "4", "--json", "--", *SLOW_THIRD
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.8, 0.8, 1.6], slack=0.02)


def test_slow_threshold_sets_what_is_slow() -> None:
    runs, _, proc = json_runs(
        "adaptive",
        "-b",
        "800ms",
        "--slow-threshold",
        "10",
        "--times",
        "4",
        "--json",
        "--",
        *SLOW_THIRD,
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.8, 0.8, 0.8], slack=0.02)


FAST_AFTER_FIRST = ["sh", "-c", 'if [ "$RPR_ITERATION" -eq 1 ]; then sleep 1; fi']


def test_fast_runs_shorten_the_interval() -> None:
    # The usual duration is 1s after the first run; quick runs after it are fast.
    runs, _, proc = json_runs(
        "adaptive", "-b", "1500ms", "--times", "4", "--json", "--", *FAST_AFTER_FIRST
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [1.5, 1.35, 1.2], slack=0.02)


def test_fast_threshold_sets_what_is_fast() -> None:
    runs, _, proc = json_runs(
        "adaptive",
        "-b",
        "1500ms",
        "--fast-threshold",
        "0.001",
        "--times",
        "3",
        "--json",
        "--",
        *FAST_AFTER_FIRST,
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [1.5, 1.5], slack=0.02)


def test_show_metrics_short_flag() -> None:
    proc = rpr("adapt", "-b", "100ms", "-m", "--times", "2", "--", "true")
    assert proc.stderr.count("rpr: adaptive: ") == 2


def test_target_load_scales_the_interval_by_load_per_core() -> None:
    proc = rpr("la", "-b", "50ms", "--target-load", "0.01", "-m", "--times", "2", "--", "true")
    assert proc.returncode == 0, proc.stderr
    for line in proc.stderr.splitlines():
        m = re.search(r"load/core (\d+\.\d\d); factor (\d+\.\d\d), interval (\S+)", line)
        if m:
            load, factor = float(m.group(1)), float(m.group(2))
            assert factor >= (load - 0.005) / 0.01 - 0.01
            if factor >= 10:
                assert m.group(3) == "500ms"
