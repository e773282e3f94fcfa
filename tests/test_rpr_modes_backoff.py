"""End to end: the backoff modes (exponential, linear, fibonacci, polynomial,
decorrelated-jitter) with the real executable."""

from __future__ import annotations

import pytest

from modes_support import close_to, json_runs, pauses, usage_error
from tools import rpr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["exponential", "--base-delay", "100ms", "--attempts", "4"], [0.1, 0.2, 0.4]),
        (["exp", "-bd", "50ms", "--multiplier", "3", "-a", "3"], [0.05, 0.15]),
        (["exp", "-bd", "100ms", "-md", "150ms", "-a", "4"], [0.1, 0.15, 0.15]),
        (["linear", "--increment", "100ms", "-a", "4"], [0.1, 0.2, 0.3]),
        (["lin", "-inc", "100ms", "--max-delay", "150ms", "-a", "3"], [0.1, 0.15]),
        (["fibonacci", "--base-delay", "100ms", "-a", "5"], [0.1, 0.1, 0.2, 0.3]),
        (["fib", "-bd", "100ms", "-a", "3"], [0.1, 0.1]),
        (["polynomial", "--base-delay", "50ms", "-a", "3"], [0.05, 0.2]),
        (["poly", "-bd", "50ms", "--exponent", "1.5", "-a", "3"], [0.05, 0.1414]),
        (["poly", "-bd", "50ms", "-exp", "3", "-a", "3"], [0.05, 0.4]),
    ],
)
def test_failures_follow_the_sequence_and_attempts_end_it(
    args: list[str], expected: list[float]
) -> None:
    runs, summary, proc = json_runs(*args, "--json", "--", "false", timeout=30)
    assert proc.returncode == 1  # the run ended (the Go tool hung here) with failed runs
    assert summary["runs"] == len(expected) + 1
    assert close_to(pauses(runs), expected, slack=0.15)


@pytest.mark.parametrize("name", ["decorrelated-jitter", "dj"])
def test_decorrelated_jitter_stays_between_base_and_multiplier_times_previous(name: str) -> None:
    runs, _, proc = json_runs(name, "-bd", "50ms", "-a", "4", "--json", "--", "false")
    assert proc.returncode == 1
    gaps = pauses(runs)
    assert len(gaps) == 3
    previous = 0.05
    for gap in gaps:
        assert 0.05 - 0.015 <= gap <= 3 * previous + 0.15
        previous = max(gap, 0.05)


def test_a_success_restarts_the_sequence() -> None:
    # Runs 1 and 2 fail (waits 100ms, 200ms), 3 and 4 succeed (waits 100ms, 100ms).
    runs, _, proc = json_runs(
        "exp", "-bd", "100ms", "-a", "5", "--json", "--", "sh", "-c", 'test "$RPR_ITERATION" -ge 3'
    )
    assert proc.returncode == 1
    assert [r["success"] for r in runs] == [False, False, True, True, True]
    assert close_to(pauses(runs), [0.1, 0.2, 0.1, 0.1], slack=0.15)


def test_attempts_default_to_three_and_success_does_not_stop_it() -> None:
    _, summary, proc = json_runs("fib", "-bd", "10ms", "--json", "--", "true")
    assert proc.returncode == 0
    assert summary["runs"] == 3 and summary["succeeded"] == 3


def test_other_stop_conditions_still_apply() -> None:
    runs, _, proc = json_runs(
        "lin",
        "-inc",
        "10ms",
        "-a",
        "10",
        "--until-success",
        "--json",
        "--",
        "sh",
        "-c",
        'test "$RPR_ITERATION" -ge 2',
    )
    assert proc.returncode == 0
    assert len(runs) == 2


def test_help_lists_the_flags_and_the_rule() -> None:
    proc = rpr("exponential", "--help")
    assert proc.returncode == 0
    for flag in (
        "--base-delay, -bd DUR",
        "--multiplier X",
        "--max-delay, -md DUR",
        "--attempts, -a N",
    ):
        assert flag in proc.stdout
    assert "after a successful run the sequence starts" in proc.stdout


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["exponential"], ["exponential: --base-delay is required"]),
        (["linear", "-bd", "1s"], ["linear: unknown flag -bd"]),
        (["linear"], ["linear: --increment is required"]),
        (
            ["exp", "-bd", "2m", "-md", "1m"],
            ["exponential: --base-delay 2m is above --max-delay 1m"],
        ),
        (["lin", "-inc", "2m"], ["linear: --increment 2m is above --max-delay 1m"]),
        (["fib", "-bd", "90s"], ["fibonacci: --base-delay 1m30s is above --max-delay 1m"]),
        (["poly", "-bd", "1s", "--exponent", "0"], ["--exponent: 0 is out of range"]),
        (["poly", "-bd", "1s", "-exp", "11"], ["--exponent: 11 is too large"]),
        (["exp", "-bd", "1s", "--multiplier", "0.5"], ["--multiplier: 0.5 is too small"]),
        (["dj", "-bd", "1s", "--multiplier", "x"], ['--multiplier: "x" is not a number']),
        (["exp", "-bd", "1s", "-a", "0"], ["--attempts: 0 is too small"]),
        (["exp", "-bd", "0s"], ['--base-delay: "0s" must be more than zero']),
        (["exp", "-bd", "1s", "--parallel", "3"], ["--parallel"]),
        (["dj", "-bd", "1s", "--every", "1s"], ["--every does not apply to decorrelated-jitter"]),
    ],
)
def test_bad_input(args: list[str], fragments: list[str]) -> None:
    assert usage_error(rpr(*args, "--", "true"), *fragments)
