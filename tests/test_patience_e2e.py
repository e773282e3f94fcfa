"""End-to-end tests of the real `patience` executable: attempts, conditions, timeouts,
exit codes, --max-time, signals, byte-exact output, --quiet."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tools import PATIENCE, env, pid_alive, run

COUNTER = 'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; '


def patience(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return run(PATIENCE, *args, **kw)


def counted(path: Path, body: str = "") -> list[str]:
    """A command that bumps a counter file on each attempt, then runs `body` (sh; $n is
    the attempt number)."""
    return ["sh", "-c", COUNTER + body, str(path)]


def count_of(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


# --- attempts and success ------------------------------------------------------------


def test_success_at_once(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience("fixed", "--delay", "10ms", "--", *counted(c, "echo hello"))
    assert r.returncode == 0
    assert r.stdout == "hello\n"
    assert count_of(c) == 1
    assert "[retry] Attempt 1/3 starting..." in r.stderr
    assert "✅ [retry] Command succeeded after 1 attempt." in r.stderr
    assert "Run Statistics:" in r.stderr


@pytest.mark.parametrize("attempts", ["1", "4"])
def test_runs_exactly_attempts_times(tmp_path: Path, attempts: str) -> None:
    c = tmp_path / "n"
    r = patience("fix", "-d", "10ms", "-a", attempts, "--", *counted(c, "exit 1"))
    assert r.returncode == 1
    assert count_of(c) == int(attempts)
    assert f"❌ [retry] Command failed after {attempts} attempt" in r.stderr
    assert r.stderr.count("Retrying in 10ms.") == int(attempts) - 1


def test_success_on_the_third_try(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience("fixed", "-d", "10ms", "-a", "5", "--", *counted(c, 'test "$n" -ge 3'))
    assert r.returncode == 0, r.stderr
    assert count_of(c) == 3
    assert "[retry] Attempt 2/5 failed (exit code 1). Retrying in 10ms." in r.stderr
    assert "✅ [retry] Command succeeded after 3 attempts." in r.stderr


def test_max_attempts_is_an_alias_of_attempts(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience("fixed", "-d", "1ms", "--max-attempts", "2", "--", *counted(c, "exit 1"))
    assert r.returncode == 1
    assert count_of(c) == 2


def test_the_command_sees_its_attempt_number(tmp_path: Path) -> None:
    r = patience("fixed", "-d", "1ms", "--", "sh", "-c", 'echo "$PATIENCE_ATTEMPT"; exit 1')
    assert r.stdout == "1\n2\n3\n"


# --- patterns ------------------------------------------------------------------------


def test_failure_pattern_stops_at_once(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience(
        "fixed",
        "-d",
        "10ms",
        "-a",
        "5",
        "--failure-pattern",
        "FATAL",
        "--",
        *counted(c, "echo 'FATAL: bad token' >&2; exit 1"),
    )
    assert r.returncode == 1
    assert count_of(c) == 1
    assert "failed (failure pattern matched). Not retrying" in r.stderr
    assert "FATAL: bad token\n" in r.stderr


def test_failure_pattern_fails_an_exit_zero_run(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience(
        "fixed",
        "-d",
        "10ms",
        "--failure-pattern",
        "error",
        "--case-insensitive",
        "--",
        *counted(c, "echo 'ERROR: partial'"),
    )
    assert r.returncode == 1
    assert count_of(c) == 1


def test_success_pattern_overrides_the_exit_code(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience(
        "fixed",
        "-d",
        "10ms",
        "--success-pattern",
        "deployed",
        "--",
        *counted(c, "echo 'service deployed'; exit 3"),
    )
    assert r.returncode == 0, r.stderr
    assert count_of(c) == 1
    assert r.stdout == "service deployed\n"


def test_failure_pattern_wins_over_success_pattern(tmp_path: Path) -> None:
    r = patience(
        "fixed",
        "-d",
        "1ms",
        "-a",
        "2",
        "--success-pattern",
        "ok",
        "--failure-pattern",
        "fatal",
        "--",
        "sh",
        "-c",
        "echo ok; echo fatal",
    )
    assert r.returncode == 1
    assert r.stderr.count("starting...") == 1


# --- timeouts and exit statuses ------------------------------------------------------


def test_timeout_kills_grandchildren(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    started = time.monotonic()
    r = patience(
        "fixed",
        "-d",
        "10ms",
        "-a",
        "2",
        "-t",
        "300ms",
        "--",
        "sh",
        "-c",
        f"sleep 30 & echo $! >> {pids}; wait",
    )
    assert r.returncode == 124
    assert r.stderr.count("failed (timed out)") == 2
    assert time.monotonic() - started < 10
    grandchildren = [int(p) for p in pids.read_text().split()]
    assert len(grandchildren) == 2
    time.sleep(0.2)
    assert not any(pid_alive(p) for p in grandchildren)


def test_a_child_ignoring_term_is_killed_after_kill_after() -> None:
    started = time.monotonic()
    r = patience(
        "fixed",
        "-a",
        "1",
        "-t",
        "200ms",
        "--kill-after",
        "300ms",
        "--",
        "sh",
        "-c",
        'trap "" TERM; sleep 30 & wait; sleep 30',
    )
    assert r.returncode == 124
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("code", [1, 7, 42, 255])
def test_the_last_exit_code_passes_through(code: int) -> None:
    r = patience("fixed", "-d", "1ms", "-a", "2", "--", "sh", "-c", f"exit {code}")
    assert r.returncode == code
    assert f"failed (exit code {code})" in r.stderr


def test_killed_by_a_signal_gives_128_plus_n() -> None:
    r = patience("fixed", "-d", "1ms", "-a", "2", "--", "sh", "-c", "kill -KILL $$")
    assert r.returncode == 137
    assert "killed by signal 9" in r.stderr


def test_command_not_found_is_not_retried() -> None:
    r = patience("fixed", "-d", "1ms", "-a", "5", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert r.stderr.strip().splitlines()[-1] == ("patience: no-such-command-xyz: command not found")
    assert "Attempt 2" not in r.stderr


def test_command_not_executable_is_not_retried(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = patience("fixed", "-d", "1ms", "-a", "5", "--", str(script))
    assert r.returncode == 126
    assert "Attempt 2" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"patience: {script}: ")


def test_retry_on_limits_which_codes_are_retried(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = patience("fixed", "-d", "1ms", "-a", "4", "--retry-on", "1,2", "--", *counted(c, "exit 3"))
    assert r.returncode == 3
    assert count_of(c) == 1
    assert "Not retrying: exit status 3 is not in --retry-on." in r.stderr
    c2 = tmp_path / "n2"
    r = patience(
        "fixed", "-d", "1ms", "-a", "4", "--retry-on", "75,1-2", "--", *counted(c2, "exit 2")
    )
    assert r.returncode == 2
    assert count_of(c2) == 4


def test_retry_on_applies_to_timeouts_by_their_status() -> None:
    r = patience(
        "fixed", "-d", "1ms", "-a", "3", "-t", "100ms", "--retry-on", "124", "--", "sleep", "5"
    )
    assert r.returncode == 124
    assert r.stderr.count("starting...") == 3


# --- --max-time ----------------------------------------------------------------------


def test_max_time_never_starts_a_wait_past_the_budget(tmp_path: Path) -> None:
    c = tmp_path / "n"
    started = time.monotonic()
    r = patience(
        "fixed", "-d", "400ms", "-a", "10", "--max-time", "1s", "--", *counted(c, "exit 1")
    )
    elapsed = time.monotonic() - started
    assert r.returncode == 1
    # Attempts at 0, 0.4 and 0.8 s; the wait to 1.2 s would pass the budget.
    assert count_of(c) == 3
    assert "Not retrying: waiting 400ms would pass --max-time 1s." in r.stderr
    assert elapsed < 1.0 + 0.5


def test_max_time_cuts_a_running_attempt() -> None:
    started = time.monotonic()
    r = patience("fixed", "-a", "3", "--max-time", "500ms", "--", "sleep", "30")
    assert r.returncode == 124
    assert "timed out: --max-time reached" in r.stderr
    assert time.monotonic() - started < 5


# --- signals -------------------------------------------------------------------------


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_attempt_is_not_retried(tmp_path: Path, sig: int, code: int) -> None:
    c = tmp_path / "n"
    pids = tmp_path / "pids"
    proc = subprocess.Popen(
        [
            PATIENCE,
            "fixed",
            "-d",
            "10ms",
            "-a",
            "5",
            "--",
            *counted(c, f"sleep 30 & echo $! > {pids}; wait"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 10
    while not pids.exists() or not pids.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == code
    assert count_of(c) == 1
    assert "interrupted" in err and "Not retrying" in err
    time.sleep(0.2)
    assert not pid_alive(int(pids.read_text()))


def test_ctrl_c_during_the_wait_stops_at_once(tmp_path: Path) -> None:
    c = tmp_path / "n"
    proc = subprocess.Popen(
        [PATIENCE, "fixed", "-d", "30s", "-a", "5", "--", *counted(c, "exit 1")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 10
    while count_of(c) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(0.2)
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert time.monotonic() - started < 5
    assert count_of(c) == 1
    assert "Interrupted while waiting. Not retrying." in err


# --- output --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [[], ["--success-pattern", "never"], ["--failure-pattern", "never"]],
    ids=["inherited", "scanned-success", "scanned-failure"],
)
def test_output_is_byte_exact(tmp_path: Path, extra: list[str]) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(3 << 20) + b"no newline at the end")
    r = subprocess.run(
        [PATIENCE, "fixed", "-d", "1ms", *extra, "--", "cat", str(blob)],
        capture_output=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0
    assert r.stdout == blob.read_bytes()


def test_http_aware_output_is_byte_exact_too(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(b"Retry-After: 0\r\n" + os.urandom(1 << 20))
    r = subprocess.run(
        [PATIENCE, "http-aware", "--", "cat", str(blob)],
        capture_output=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0
    assert r.stdout == blob.read_bytes()


def test_stdout_holds_only_the_commands_output() -> None:
    r = patience(
        "fixed", "-d", "1ms", "-a", "2", "--", "sh", "-c", "echo out; echo err >&2; exit 1"
    )
    assert r.stdout == "out\nout\n"
    assert "err\n" in r.stderr and "[retry]" in r.stderr


def test_quiet_leaves_only_errors(tmp_path: Path) -> None:
    r = patience("fixed", "-d", "1ms", "-q", "--", "sh", "-c", "echo out; exit 4")
    assert r.returncode == 4
    assert r.stdout == "out\nout\nout\n"
    assert r.stderr == ""
    r = patience("fixed", "--quiet", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert r.stderr == "patience: no-such-command-xyz: command not found\n"


def test_statistics_block() -> None:
    r = patience("fixed", "-d", "20ms", "--", "sh", "-c", 'test "$PATIENCE_ATTEMPT" = 2')
    assert r.returncode == 0
    block = r.stderr[r.stderr.index("\nRun Statistics:") :]
    lines = block.splitlines()
    # The Go tool's labels, in its order, after a blank line; then our two extra figures.
    assert lines[:5] == [
        "",
        "Run Statistics:",
        "  Total Attempts: 2",
        "  Successful Runs: 1",
        "  Failed Runs: 1",
    ]
    assert lines[5].startswith("  Total Duration: ")
    assert lines[6] == "  Final Reason: command succeeded"
    assert lines[7].startswith("  Time Waiting: ") and lines[8].startswith("  Longest Attempt: ")


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["-a", "2", "--", "false"], "max attempts reached"),
        (["--failure-pattern", "boom", "--", "sh", "-c", "echo boom"], "failure pattern matched"),
        (["--retry-on", "1", "--", "sh", "-c", "exit 3"], "exit status 3 is not in --retry-on"),
        (["-d", "1s", "--max-time", "500ms", "--", "false"], "--max-time reached"),
    ],
)
def test_statistics_give_the_final_reason(args: list[str], reason: str) -> None:
    r = patience("fixed", "-d", "1ms", *args)
    assert r.returncode != 0
    assert f"\n  Final Reason: {reason}\n" in r.stderr


def test_interrupted_is_reported_even_when_the_attempt_exits_0(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    proc = subprocess.Popen(
        [
            PATIENCE,
            "fixed",
            "-a",
            "3",
            "--",
            "sh",
            "-c",
            f'trap "exit 0" INT; touch {ready}; sleep 30 & wait',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
    )
    deadline = time.monotonic() + 10
    while not ready.exists():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert "interrupted (SIGINT). Not retrying." in err
