"""End-to-end tests of the real `rpr` executable: modes, stop conditions, timing policies,
exit codes, signals, byte-exact output, bounded memory, patterns and output modes."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tools import RPR, env, pid_alive, rpr, runs_and_summary

COUNTER = 'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; '


def counted(path: Path, body: str = "") -> list[str]:
    """A command that bumps a counter file on each run, then runs `body` (sh)."""
    return ["sh", "-c", COUNTER + body, str(path)]


def count_of(path: Path) -> int:
    return int(path.read_text()) if path.exists() else 0


# --- modes and stop conditions -------------------------------------------------------


@pytest.mark.parametrize("name", ["interval", "int", "i"])
def test_interval_with_times(tmp_path: Path, name: str) -> None:
    c = tmp_path / "n"
    r = rpr(name, "--every", "50ms", "--times", "4", "--", *counted(c))
    assert r.returncode == 0, r.stderr
    assert count_of(c) == 4


@pytest.mark.parametrize("name", ["count", "cnt", "c"])
def test_count_back_to_back(tmp_path: Path, name: str) -> None:
    c = tmp_path / "n"
    start = time.monotonic()
    r = rpr(name, "--times", "7", "--", *counted(c))
    assert r.returncode == 0, r.stderr
    assert count_of(c) == 7
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("name", ["duration", "dur", "d"])
def test_duration_starts_no_run_after_deadline(tmp_path: Path, name: str) -> None:
    r = rpr(name, "--for", "1s", "--every", "200ms", "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    runs, summary = runs_and_summary(r.stdout)
    # Runs at 0, 0.2, ..., 1.0: five or six depending on whether the tick at 1.0 made it.
    assert 5 <= summary["runs"] <= 6
    first = runs[0]["actual_start"]
    assert all(run["actual_start"] - first <= 1.0 + 0.05 for run in runs)


def test_interval_with_for_stops(tmp_path: Path) -> None:
    r = rpr("interval", "--every", "100ms", "--for", "550ms", "--json", "--", "true")
    _, summary = runs_and_summary(r.stdout)
    assert summary["runs"] == 6


def test_until_success_stops_at_first_success_and_exits_zero(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = rpr("interval", "--every", "20ms", "--until-success", "--", *counted(c, "test $n -ge 3"))
    assert r.returncode == 0, r.stderr
    assert count_of(c) == 3


def test_until_success_not_met_exits_one(tmp_path: Path) -> None:
    r = rpr("count", "--times", "3", "--until-success", "--", "false")
    assert r.returncode == 1


@pytest.mark.parametrize("flag", ["--until-failure", "--stop-on-failure"])
def test_until_failure(tmp_path: Path, flag: str) -> None:
    c = tmp_path / "n"
    r = rpr("interval", "--every", "20ms", flag, "--", *counted(c, "test $n -lt 4"))
    assert r.returncode == 1
    assert count_of(c) == 4


def test_max_failures(tmp_path: Path) -> None:
    c = tmp_path / "n"
    # Fails on odd runs: the third failure is run 5.
    r = rpr(
        "count", "--times", "100", "--max-failures", "3", "--", *counted(c, "test $((n%2)) -eq 0")
    )
    assert r.returncode == 1
    assert count_of(c) == 5


def test_failures_do_not_stop_by_default(tmp_path: Path) -> None:
    c = tmp_path / "n"
    r = rpr("count", "--times", "5", "--", *counted(c, "exit 1"))
    assert r.returncode == 1
    assert count_of(c) == 5


def test_child_sees_iteration_number(tmp_path: Path) -> None:
    r = rpr("count", "--times", "3", "--", "sh", "-c", "echo $RPR_ITERATION")
    assert r.stdout == "1\n2\n3\n"


def test_no_immediate_waits_one_interval() -> None:
    start = time.monotonic()
    r = rpr("interval", "--every", "400ms", "--times", "1", "--no-immediate", "--", "true")
    assert r.returncode == 0
    assert time.monotonic() - start >= 0.4


# --- timing: parallelism, overruns, jitter ---------------------------------------------


def _intervals(log: Path) -> list[tuple[float, float]]:
    spans = []
    for line in log.read_text().split():
        a, b = line.split(",")
        spans.append((float(a), float(b)))
    return sorted(spans)


SPAN = 's=$(date +%s.%N); sleep 0.3; echo "$s,$(date +%s.%N)" >> "$0"'


def test_parallel_one_never_overlaps(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = rpr("count", "--times", "4", "--every", "100ms", "--", "sh", "-c", SPAN, str(log))
    assert r.returncode == 0, r.stderr
    spans = _intervals(log)
    assert len(spans) == 4
    assert all(spans[i][1] <= spans[i + 1][0] for i in range(3))


def test_parallel_three_overlaps_and_holds_the_rate(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = rpr(
        "count",
        "--times",
        "6",
        "--every",
        "100ms",
        "--parallel",
        "3",
        "--json",
        "--",
        "sh",
        "-c",
        SPAN,
        str(log),
    )
    assert r.returncode == 0, r.stderr
    spans = _intervals(log)
    assert len(spans) == 6
    assert any(spans[i][1] > spans[i + 1][0] for i in range(5))
    runs, summary = runs_and_summary(r.stdout)
    assert summary["skipped_ticks"] == 0
    starts = sorted(run["actual_start"] for run in runs)
    # Six starts 100 ms apart: the rate held although each run took 300 ms.
    assert starts[-1] - starts[0] == pytest.approx(0.5, abs=0.15)


SLOW_FIRST = 'if [ "$RPR_ITERATION" = 1 ]; then sleep 0.35; fi'


def _offsets(policy: str) -> tuple[list[float], dict[str, object]]:
    r = rpr(
        "count",
        "--times",
        "5",
        "--every",
        "100ms",
        "--on-overrun",
        policy,
        "--json",
        "--",
        "sh",
        "-c",
        SLOW_FIRST,
    )
    assert r.returncode == 0, r.stderr
    runs, summary = runs_and_summary(r.stdout)
    t0 = runs[0]["actual_start"]
    return [round(run["actual_start"] - t0, 3) for run in runs], summary


def test_overrun_skip_drops_ticks_and_keeps_phase() -> None:
    offsets, summary = _offsets("skip")
    assert summary["skipped_ticks"] == 3
    for got, want in zip(offsets, [0.0, 0.4, 0.5, 0.6, 0.7], strict=True):
        assert got == pytest.approx(want, abs=0.06)


def test_overrun_burst_runs_missed_ticks_back_to_back() -> None:
    offsets, summary = _offsets("burst")
    assert summary["skipped_ticks"] == 0
    for got, want in zip(offsets, [0.0, 0.35, 0.35, 0.35, 0.4], strict=True):
        assert got == pytest.approx(want, abs=0.06)


def test_overrun_delay_shifts_the_phase() -> None:
    offsets, summary = _offsets("delay")
    assert summary["skipped_ticks"] == 0
    for got, want in zip(offsets, [0.0, 0.35, 0.45, 0.55, 0.65], strict=True):
        assert got == pytest.approx(want, abs=0.06)


def test_jitter_delays_within_bound_without_drift() -> None:
    r = rpr(
        "interval", "--every", "100ms", "--times", "8", "--jitter", "50%", "--json", "--", "true"
    )
    runs, _ = runs_and_summary(r.stdout)
    t0 = runs[0]["scheduled_start"]
    offsets = [run["scheduled_start"] - t0 for run in runs]
    # Run k is due somewhere in [k*100ms, k*100ms + 50ms): jitter never accumulates.
    for k, off in enumerate(offsets[1:], start=1):
        assert 0.1 * k - 0.05 <= off <= 0.1 * k + 0.05 + 1e-6
    assert len({round(o, 4) for o in offsets}) > 2


def test_timeout_fails_the_run_with_reason_timeout() -> None:
    r = rpr("count", "--times", "2", "--timeout", "200ms", "--json", "--", "sleep", "5")
    assert r.returncode == 1
    runs, summary = runs_and_summary(r.stdout)
    assert [run["reason"] for run in runs] == ["timed out", "timed out"]
    assert all(run["timed_out"] and run["signal"] == signal.SIGTERM for run in runs)
    assert summary["exit_codes"] == {"124": 2}


def test_kill_after_escalates_when_term_is_ignored() -> None:
    start = time.monotonic()
    r = rpr(
        "count",
        "--times",
        "1",
        "--timeout",
        "200ms",
        "--kill-after",
        "300ms",
        "--json",
        "--",
        "sh",
        "-c",
        "trap '' TERM; sleep 10",
    )
    runs, _ = runs_and_summary(r.stdout)
    assert runs[0]["timed_out"] and runs[0]["signal"] == signal.SIGKILL
    assert time.monotonic() - start < 5


# --- exit codes and signals ------------------------------------------------------------


def test_exit_codes_zero_and_one() -> None:
    assert rpr("count", "--times", "2", "--", "true").returncode == 0
    assert rpr("count", "--times", "2", "--", "sh", "-c", "exit 3").returncode == 1


def test_command_not_found_exits_127_at_once(tmp_path: Path) -> None:
    r = rpr("interval", "--every", "1s", "--", "no-such-command-xyz")
    assert r.returncode == 127
    assert r.stderr.strip() == "rpr: no-such-command-xyz: command not found"


def test_command_not_executable_exits_126(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    r = rpr("interval", "--every", "1s", "--", str(script))
    assert r.returncode == 126
    assert str(script) in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize("background", [False, True])
def test_signal_reaches_grandchild_and_exit_code(
    tmp_path: Path, sig: int, code: int, background: bool
) -> None:
    pidfile = tmp_path / "pid"
    body = (
        f"sleep 300 & echo $! > {pidfile}; wait"
        if background
        else f'sh -c "echo \\$\\$ > {pidfile}; exec sleep 300"'
    )
    proc = subprocess.Popen(
        [RPR, "interval", "--every", "10s", "--kill-after", "1s", "--", "sh", "-c", body],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.02)
    grandchild = int(pidfile.read_text())
    time.sleep(0.1)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == code, err
    assert "rpr summary" in err
    deadline = time.monotonic() + 5
    while pid_alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(grandchild), "the grandchild survived"


def test_interrupt_while_waiting_between_runs() -> None:
    proc = subprocess.Popen(
        [RPR, "interval", "--every", "30s", "--", "true"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    start = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    assert time.monotonic() - start < 2
    assert "1 succeeded" in err


# --- output ----------------------------------------------------------------------------


@pytest.mark.parametrize("capture", [False, True])
def test_random_bytes_pass_through_unchanged(tmp_path: Path, capture: bool) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(os.urandom(1 << 20))
    extra = ["--success-pattern", "never-matches-zzz"] if capture else []
    r = subprocess.run(
        [RPR, "count", "--times", "1", *extra, "--", "cat", str(blob)],
        env=env(),
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0
    assert r.stdout == blob.read_bytes()


def test_stdout_and_stderr_stay_separate() -> None:
    r = rpr(
        "count",
        "--times",
        "1",
        "--failure-pattern",
        "zzz",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2",
    )
    assert r.stdout == "out\n"
    assert r.stderr.startswith("err\n")


@pytest.mark.slow
def test_200mb_stream_in_bounded_memory(tmp_path: Path) -> None:
    script = tmp_path / "measure.py"
    # Measure in a fresh process: RUSAGE_CHILDREN then holds rpr's peak and its child's.
    script.write_text(
        "import resource, subprocess, sys\n"
        "p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE)\n"
        "total = 0\n"
        "while chunk := p.stdout.read(1 << 16):\n"
        "    total += len(chunk)\n"
        "p.wait()\n"
        "print(total, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    r = subprocess.run(
        [
            os.environ.get("PYTHON", str(Path(RPR).parent / "python")),
            str(script),
            RPR,
            "count",
            "--times",
            "1",
            "--output-prefix",
            "> ",
            "--",
            "head",
            "-c",
            "200000000",
            "/dev/zero",
        ],
        env=env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    total, maxrss_kib = map(int, r.stdout.split())
    assert total >= 200_000_000
    assert maxrss_kib < 60 * 1024, f"rpr peaked at {maxrss_kib} KiB"
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0


def test_output_prefix_prefixes_every_line_of_both_streams() -> None:
    r = rpr(
        "count", "--times", "2", "-o", "[x] ", "--", "sh", "-c", "printf 'a\\nb\\n'; echo e >&2"
    )
    assert r.stdout == "[x] a\n[x] b\n[x] a\n[x] b\n"
    assert r.stderr.startswith("[x] e\n[x] e\n")


def test_quiet_prints_nothing() -> None:
    r = rpr("count", "--times", "2", "-q", "--", "echo", "hello")
    assert r.returncode == 0 and r.stdout == "" and r.stderr == ""


def test_verbose_prints_a_line_per_run() -> None:
    r = rpr("count", "--times", "3", "-v", "--", "echo", "hi")
    assert r.stdout == "hi\nhi\nhi\n"
    lines = [line for line in r.stderr.splitlines() if line.startswith("rpr: run ")]
    assert len(lines) == 3 and "ok (exit code 0)" in lines[0]


def test_stats_only_prints_summary_on_stdout_only() -> None:
    r = rpr(
        "count",
        "--times",
        "3",
        "--stats-only",
        "--",
        "sh",
        "-c",
        "echo noise; exit $((RPR_ITERATION-1))",
    )
    assert r.returncode == 1
    assert r.stderr == ""
    assert "noise" not in r.stdout
    assert "3 (1 succeeded, 2 failed, 33.3% success)" in r.stdout
    for key in ("duration:", "p50", "p95", "p99", "lateness:", "exit codes:    0: 1, 1: 1, 2: 1"):
        assert key in r.stdout


def test_json_records_per_run_and_summary() -> None:
    r = rpr(
        "count",
        "--times",
        "3",
        "--every",
        "50ms",
        "--json",
        "--",
        "sh",
        "-c",
        "echo x; exit $((RPR_ITERATION==2))",
    )
    runs, summary = runs_and_summary(r.stdout)
    assert [run["iteration"] for run in runs] == [1, 2, 3]
    assert [run["success"] for run in runs] == [True, False, True]
    keys = {
        "iteration",
        "scheduled_start",
        "actual_start",
        "lateness",
        "duration",
        "exit_code",
        "signal",
        "timed_out",
        "success",
        "reason",
    }
    assert keys <= set(runs[0])
    assert runs[1]["exit_code"] == 1 and runs[1]["reason"] == "exit code 1"
    assert summary["runs"] == 3 and summary["failed"] == 1
    assert summary["success_rate"] == pytest.approx(2 / 3, abs=1e-3)
    assert set(summary["duration"]) == {"min", "p50", "p95", "p99", "max"}
    assert set(summary["lateness"]) == {"p50", "p99"}


def test_default_summary_on_stderr() -> None:
    r = rpr("count", "--times", "2", "--", "echo", "hi")
    assert r.stdout == "hi\nhi\n"
    assert "rpr summary" in r.stderr and "2 (2 succeeded, 0 failed, 100.0% success)" in r.stderr


def test_progress_is_silent_when_stderr_is_not_a_terminal() -> None:
    r = rpr("count", "--times", "2", "--progress", "-q", "--", "true")
    assert r.returncode == 0 and r.stderr == ""


# --- patterns --------------------------------------------------------------------------


def test_success_pattern_overrides_exit_code() -> None:
    r = rpr(
        "count",
        "--times",
        "2",
        "--success-pattern",
        "READY",
        "--json",
        "--",
        "sh",
        "-c",
        "echo READY; exit 3",
    )
    runs, _ = runs_and_summary(r.stdout)
    assert r.returncode == 0
    assert all(run["success"] and run["reason"] == "success pattern matched" for run in runs)


def test_failure_pattern_overrides_exit_zero_and_beats_success() -> None:
    r = rpr(
        "count",
        "--times",
        "1",
        "--success-pattern",
        "ok",
        "--failure-pattern",
        "ERROR",
        "--json",
        "--",
        "sh",
        "-c",
        "echo ok; echo ERROR >&2",
    )
    runs, _ = runs_and_summary(r.stdout)
    assert r.returncode == 1 and runs[0]["reason"] == "failure pattern matched"


def test_unmatched_success_pattern_does_not_fail_exit_zero() -> None:
    assert rpr("count", "--times", "1", "--success-pattern", "nope", "--", "true").returncode == 0


def test_case_insensitive_patterns() -> None:
    args = ["count", "--times", "1", "--failure-pattern", "error", "--", "echo", "ERROR"]
    assert rpr(*args).returncode == 0
    assert rpr(*args[:5], "--case-insensitive", *args[5:]).returncode == 1


# --- usage ----------------------------------------------------------------------------


def test_version_and_help() -> None:
    v = rpr("--version")
    assert v.returncode == 0 and v.stdout.startswith("rpr ")
    h = rpr("--help")
    assert h.returncode == 0 and "interval" in h.stdout and "duration" in h.stdout
    s = rpr("interval", "--help")
    assert s.returncode == 0 and "--every" in s.stdout and "--on-overrun" in s.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["interval", "--evry", "1s", "--", "true"], "unknown flag --evry (did you mean --every?)"),
        (
            ["intervl", "--every", "1s", "--", "true"],
            'unknown subcommand "intervl" (did you mean interval?)',
        ),
        ([], "no subcommand"),
        (["interval", "--every", "1s", "true"], "put -- before the command (found 'true')"),
        (["interval", "--every", "1s", "--"], "no command after --"),
        (["interval", "--", "true"], "--every is required"),
        (["count", "--", "true"], "--times is required"),
        (["duration", "--", "true"], "--for is required"),
        (["interval", "--every", "5", "--", "true"], '--every: "5" has no unit (try 5s)'),
        (["interval", "--every", "fast", "--", "true"], '--every: "fast" is not a duration'),
        (["interval", "--every", "0s", "--", "true"], '--every: "0s" must be more than zero'),
        (["interval", "--every", "-1s", "--", "true"], "is negative"),
        (["count", "--times", "0", "--", "true"], "--times: 0 is too small (at least 1)"),
        (["count", "--times", "-3", "--", "true"], "--times: -3 is too small"),
        (["count", "--times", "x", "--", "true"], '--times: "x" is not a whole number'),
        (["count", "--times", "2", "--parallel", "0", "--", "true"], "--parallel: 0 is too small"),
        (
            ["count", "--times", "2", "-q", "-s", "--", "true"],
            "--quiet and --stream cannot be used together",
        ),
        (
            ["count", "--times", "2", "-q", "-v", "--", "true"],
            "--quiet and --verbose cannot be used together",
        ),
        (
            ["count", "--times", "2", "--stats-only", "-v", "--", "true"],
            "--stats-only cannot be combined with --verbose",
        ),
        (
            ["count", "--times", "2", "--json", "-o", "x", "--", "true"],
            "--json and --output-prefix cannot be used together",
        ),
        (
            ["count", "--times", "2", "--on-overrun", "drop", "--", "true"],
            '"drop" is not one of skip, burst, delay',
        ),
        (["count", "--times", "2", "--jitter", "10%", "--", "true"], "--jitter 10% needs --every"),
        (
            ["count", "--times", "2", "--jitter", "150%", "--every", "1s", "--", "true"],
            "between 0% and 100%",
        ),
        (
            ["count", "--times", "2", "--success-pattern", "(", "--", "true"],
            '--success-pattern: invalid regular expression "("',
        ),
        (["count", "--times", "2", "--timeout", "--", "true"], "--timeout needs a value"),
        (["--bogus", "count"], "unknown option --bogus"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    r = rpr(*args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rpr: "), r.stderr
    assert message in lines[0]


# --- rate limit ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["rate-limit", "rate", "rl", "r"])
def test_rate_limit_never_exceeds_the_rate_in_any_window(name: str) -> None:
    r = rpr(name, "--rate", "5/1s", "--times", "12", "--json", "--", "true")
    assert r.returncode == 0, r.stderr
    runs, _ = runs_and_summary(r.stdout)
    starts = sorted(run["actual_start"] for run in runs)
    assert len(starts) == 12
    # Tokens are granted exactly; the process starts a few ms after its grant, so a
    # window measured on start times gets a small allowance for that spawn latency.
    for i, t in enumerate(starts):
        assert sum(1 for u in starts[i:] if u < t + 1.0 - 0.05) <= 5
    # Exact, not slower than needed: 12 runs at 5 per second take a little over 2 s.
    assert 2.0 <= starts[-1] - starts[0] < 2.6


def test_rate_on_interval_mode_too() -> None:
    r = rpr(
        "interval", "--every", "10ms", "--rate", "3/500ms", "--times", "6", "--json", "--", "true"
    )
    runs, _ = runs_and_summary(r.stdout)
    starts = sorted(run["actual_start"] for run in runs)
    assert starts[3] - starts[0] >= 0.5 - 0.01


def test_retry_pattern_retries_at_offsets_after_a_failure() -> None:
    r = rpr(
        "rate-limit",
        "--rate",
        "100/1s",
        "--retry-pattern",
        "0,300ms,600ms",
        "--every",
        "2s",
        "--times",
        "4",
        "--json",
        "--",
        "false",
    )
    runs, _ = runs_and_summary(r.stdout)
    t0 = runs[0]["actual_start"]
    offsets = [run["actual_start"] - t0 for run in runs]
    for got, want in zip(offsets, [0.0, 0.0, 0.3, 0.6], strict=True):
        assert got == pytest.approx(want, abs=0.08)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["rate-limit", "--", "true"], "--rate is required"),
        (
            ["rate-limit", "--rate", "5", "--", "true"],
            '--rate: "5" is not a rate (try 100/1h or 10/s)',
        ),
        (["rate-limit", "--rate", "0/1s", "--", "true"], '"0/1s" is not a rate'),
        (["rate-limit", "--rate", "5/0s", "--", "true"], "needs a window longer than zero"),
        (["rate-limit", "--rate", "5/x", "--", "true"], "--rate:"),
        (
            ["rate-limit", "--rate", "5/1s", "--retry-pattern", "1s,0", "--", "true"],
            "goes back in time (0s after 1s)",
        ),
        (
            ["rate-limit", "--rate", "5/1s", "--retry-pattern", "1s,x", "--", "true"],
            "--retry-pattern:",
        ),
    ],
)
def test_rate_usage_errors(args: list[str], message: str) -> None:
    r = rpr(*args)
    assert r.returncode == 2 and r.stdout == ""
    assert message in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_no_run_starts_after_for_even_when_waiting_for_a_token() -> None:
    # 2 tokens per 2 s: the third run would start at 2 s, after the 1 s deadline.
    start = time.monotonic()
    r = rpr("rate-limit", "--rate", "2/2s", "--for", "1s", "--json", "--", "true")
    _, summary = runs_and_summary(r.stdout)
    assert summary["runs"] == 2
    # The next token (at 2 s) is past the deadline: rpr stops at once instead of waiting for it.
    assert time.monotonic() - start < 0.9


def test_progress_draws_a_status_line_on_a_terminal() -> None:
    import pty

    primary, secondary = pty.openpty()
    try:
        proc = subprocess.Popen(
            [RPR, "count", "--times", "3", "--progress", "-q", "--", "true"],
            env=env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=secondary,
        )
        proc.wait(timeout=30)
        os.close(secondary)
        secondary = -1
        seen = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            seen += chunk
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    assert proc.returncode == 0
    text = seen.decode()
    assert "\r\x1b[Krpr: run 3/3, 3 ok, 0 failed" in text
    assert text.endswith("\r\x1b[K")  # the line is cleared when rpr ends
