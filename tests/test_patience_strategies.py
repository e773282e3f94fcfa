"""End-to-end: each strategy's delays as the real `patience` reports and waits them;
http-aware hints from real output, adaptive memory across runs, diophantine rate limiting,
and composition under `rpr`."""

from __future__ import annotations

import email.utils
import re
import subprocess
import time
from pathlib import Path

import pytest

from patience.durations import parse_duration
from tools import PATIENCE, RPR, env, run


def patience(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return run(PATIENCE, *args, **kw)


def delays(stderr: str) -> list[float]:
    return [
        parse_duration(d) for d in re.findall(r"Retrying in (\S+?)(?: \(.*\))?\.$", stderr, re.M)
    ]


# --- the delay formulas --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["fixed", "-d", "15ms", "-a", "3"], [0.015, 0.015]),
        (["exponential", "-b", "10ms", "-x", "3", "-a", "4"], [0.01, 0.03, 0.09]),
        (["exp", "-b", "10ms", "-m", "15ms", "-a", "4"], [0.01, 0.015, 0.015]),
        (["linear", "-i", "10ms", "-a", "4"], [0.01, 0.02, 0.03]),
        (["lin", "-i", "10ms", "-m", "25ms", "-a", "4"], [0.01, 0.02, 0.025]),
        (["fibonacci", "-b", "10ms", "-a", "6"], [0.01, 0.01, 0.02, 0.03, 0.05]),
        (["polynomial", "-b", "10ms", "-a", "4"], [0.01, 0.04, 0.09]),
        (["poly", "-b", "10ms", "-e", "1.5", "-a", "3"], [0.01, 0.0283]),
    ],
)
def test_reported_delays_follow_the_formula(args: list[str], expected: list[float]) -> None:
    r = patience(*args, "--", "false")
    assert r.returncode == 1
    assert delays(r.stderr) == pytest.approx(expected, rel=0.02)


def test_jitter_stays_under_the_exponential_ceiling() -> None:
    r = patience("jitter", "-b", "20ms", "-a", "5", "--", "false")
    got = delays(r.stderr)
    assert len(got) == 4
    # The delay is drawn below the ceiling but reported to 0.1 ms: 19.97 ms prints as 20ms.
    assert all(0 <= d <= 0.02 * 2**i for i, d in enumerate(got))


def test_decorrelated_jitter_stays_between_base_and_cap() -> None:
    r = patience("dj", "-b", "10ms", "-m", "30ms", "-a", "8", "--", "false")
    got = delays(r.stderr)
    assert len(got) == 7
    assert all(0.01 <= d <= 0.03 for d in got)


def test_the_reported_delay_is_waited() -> None:
    started = time.monotonic()
    r = patience("fixed", "-d", "300ms", "-a", "3", "--", "false")
    assert r.returncode == 1
    assert 0.6 <= time.monotonic() - started < 3


def test_a_huge_attempt_count_never_sleeps_absurdly() -> None:
    r = patience("exp", "-b", "1ms", "-m", "2ms", "-a", "1000", "--", "false", timeout=120)
    assert r.returncode == 1
    got = delays(r.stderr)
    assert len(got) == 999
    assert max(got) == 0.002 and min(got) >= 0.001


# --- http-aware ----------------------------------------------------------------------


# First attempt prints a 429 response; the next one succeeds.
def first_fails_with(tmp_path: Path, response: str, stream: str = "") -> list[str]:
    body = tmp_path / "response"
    body.write_text(response)
    redirect = ">&2" if stream == "stderr" else ""
    return [
        "sh",
        "-c",
        f'if [ "$PATIENCE_ATTEMPT" = 1 ]; then cat "$0" {redirect}; exit 22; fi; echo ok',
        str(body),
    ]


def test_retry_after_is_honoured(tmp_path: Path) -> None:
    cmd = first_fails_with(tmp_path, "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1\r\n\r\n")
    started = time.monotonic()
    r = patience("http-aware", "--", *cmd)
    elapsed = time.monotonic() - started
    assert r.returncode == 0, r.stderr
    assert "Retrying in 1s (server hint)." in r.stderr
    assert 0.95 <= elapsed < 4


def test_fractional_json_hint_nested(tmp_path: Path) -> None:
    cmd = first_fails_with(tmp_path, '{"error":{"code":"rate_limited","retry_after":0.3}}')
    r = patience("ha", "--", *cmd)
    assert r.returncode == 0
    assert "Retrying in 300ms (server hint)." in r.stderr


def test_hint_read_from_stderr_curl_verbose(tmp_path: Path) -> None:
    cmd = first_fails_with(tmp_path, "< HTTP/2 429\n< retry-after: 0.2\n<\n", stream="stderr")
    r = patience("ha", "--", *cmd)
    assert r.returncode == 0
    assert "Retrying in 200ms (server hint)." in r.stderr


def test_retry_after_http_date(tmp_path: Path) -> None:
    date = email.utils.formatdate(time.time() + 2, usegmt=True)
    cmd = first_fails_with(tmp_path, f"HTTP/1.1 503 Service Unavailable\r\nRetry-After: {date}\r\n")
    started = time.monotonic()
    r = patience("ha", "--", *cmd)
    elapsed = time.monotonic() - started
    assert r.returncode == 0
    assert "(server hint)" in r.stderr
    assert 0.9 <= elapsed < 5  # the date has one-second resolution


def test_x_ratelimit_reset_unix_time(tmp_path: Path) -> None:
    reset = int(time.time()) + 2
    cmd = first_fails_with(
        tmp_path, f"HTTP/2 403\r\nx-ratelimit-remaining: 0\r\nx-ratelimit-reset: {reset}\r\n"
    )
    started = time.monotonic()
    r = patience("ha", "--", *cmd)
    assert r.returncode == 0
    assert "(server hint)" in r.stderr
    assert 0.9 <= time.monotonic() - started < 5


def test_the_hint_is_capped_at_max_delay(tmp_path: Path) -> None:
    cmd = first_fails_with(tmp_path, "Retry-After: 3600\n")
    started = time.monotonic()
    r = patience("ha", "-m", "200ms", "--", *cmd)
    assert r.returncode == 0
    assert "Retrying in 200ms (server hint)." in r.stderr
    assert time.monotonic() - started < 3


def test_without_a_hint_the_fallback_decides(tmp_path: Path) -> None:
    r = patience("ha", "-b", "20ms", "-a", "3", "--", "sh", "-c", "echo 'HTTP/1.1 500'; exit 22")
    assert r.returncode == 22
    assert delays(r.stderr) == pytest.approx([0.02, 0.04])
    assert "server hint" not in r.stderr
    r = patience("ha", "-f", "fixed", "-b", "30ms", "-a", "3", "--", "false")
    assert delays(r.stderr) == pytest.approx([0.03, 0.03])


def test_a_hint_beyond_the_first_10_kib_is_not_read(tmp_path: Path) -> None:
    cmd = first_fails_with(tmp_path, "x" * 12000 + "\nRetry-After: 5\n")
    r = patience("ha", "-b", "10ms", "--", *cmd)
    assert r.returncode == 0
    assert "Retrying in 10ms." in r.stderr


# --- adaptive ------------------------------------------------------------------------

RECOVERS_AFTER_250MS = (
    # Fails on the first attempt of each run; afterwards succeeds only if at least 250 ms
    # have passed since the previous attempt ended (a service that needs time to recover).
    'now=$(date +%s%N); f="$0"; '
    'if [ "$PATIENCE_ATTEMPT" = 1 ]; then date +%s%N > "$f"; exit 1; fi; '
    'last=$(cat "$f"); '
    "if [ $(( (now - last) / 1000000 )) -ge 250 ]; then echo ok; exit 0; fi; "
    'date +%s%N > "$f"; exit 1'
)


def test_adaptive_learns_across_runs_and_persists_per_command(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cmd = ["sh", "-c", RECOVERS_AFTER_250MS, str(tmp_path / "last")]
    attempts = []
    for _ in range(4):
        r = patience(
            "adaptive", "-b", "40ms", "-a", "10", "--", *cmd, env=env(XDG_STATE_HOME=str(state))
        )
        assert r.returncode == 0, r.stderr
        attempts.append(r.stderr.count("starting..."))
    # First run: 40, 80, 160 ms fail, 320 ms works (160 ms may pass on a loaded machine).
    # Later runs wait the learned delay at once.
    assert attempts[0] >= 4
    assert attempts[-1] == 2
    assert "(learned)" in r.stderr
    files = list((state / "patience").glob("adaptive-*.json"))
    assert len(files) == 1
    # Another command starts from nothing.
    r = patience(
        "adaptive", "-b", "10ms", "--", "sh", "-c", "exit 0", env=env(XDG_STATE_HOME=str(state))
    )
    assert r.returncode == 0
    assert len(list((state / "patience").glob("adaptive-*.json"))) == 1  # nothing to learn


def test_adaptive_with_an_unwritable_state_dir_still_works(tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    r = patience(
        "adaptive",
        "-b",
        "10ms",
        "-a",
        "2",
        "--",
        "sh",
        "-c",
        'test "$PATIENCE_ATTEMPT" = 2',
        env=env(XDG_STATE_HOME=str(blocker)),
    )
    assert r.returncode == 0
    assert "patience: adaptive: cannot save what it learned" in r.stderr


def test_adaptive_with_a_corrupt_memory_warns_and_starts_afresh(tmp_path: Path) -> None:
    state = tmp_path / "state"
    cmd = ["sh", "-c", 'test "$PATIENCE_ATTEMPT" = 2']
    patience("adaptive", "-b", "10ms", "--", *cmd, env=env(XDG_STATE_HOME=str(state)))
    (memory,) = (state / "patience").glob("adaptive-*.json")
    memory.write_text("{garbage")
    r = patience("adaptive", "-b", "10ms", "--", *cmd, env=env(XDG_STATE_HOME=str(state)))
    assert r.returncode == 0
    assert "ignoring unreadable memory" in r.stderr
    assert memory.read_text().startswith("{")  # rewritten


# --- diophantine ---------------------------------------------------------------------


def starts_of(log: Path) -> list[float]:
    return [int(line) / 1e9 for line in log.read_text().split()]


def test_diophantine_never_exceeds_the_rate_limit(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    r = patience(
        "diophantine",
        "--rate-limit",
        "2",
        "--window",
        "500ms",
        "--retry-offsets",
        "0,0,0,0,0",
        "--",
        "sh",
        "-c",
        'date +%s%N >> "$0"; exit 1',
        str(log),
    )
    assert r.returncode == 1
    starts = starts_of(log)
    assert len(starts) == 5  # explicit offsets plan one attempt each
    for i in range(len(starts) - 2):
        assert starts[i + 2] - starts[i] >= 0.5 - 0.01, starts
    assert starts[-1] - starts[0] < 5
    assert "(rate limit 2 per 500ms (diophantine))" in r.stderr


def test_diophantine_follows_the_planned_offsets(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    r = patience(
        "dio", "-o", "0,300ms,600ms", "--", "sh", "-c", 'date +%s%N >> "$0"; exit 1', str(log)
    )
    assert r.returncode == 1
    starts = starts_of(log)
    assert len(starts) == 3
    assert 0.28 <= starts[1] - starts[0] < 0.6
    assert 0.58 <= starts[2] - starts[0] < 1.0


def test_diophantine_attempts_beyond_the_offsets_repeat_the_last_gap(tmp_path: Path) -> None:
    log = tmp_path / "starts"
    r = patience(
        "dioph",
        "-o",
        "0,100ms",
        "-a",
        "4",
        "--",
        "sh",
        "-c",
        'date +%s%N >> "$0"; exit 1',
        str(log),
    )
    assert r.returncode == 1
    starts = starts_of(log)
    assert len(starts) == 4
    assert delays(r.stderr) == pytest.approx([0.1, 0.1, 0.1], abs=0.05)


def test_diophantine_stops_on_success(tmp_path: Path) -> None:
    r = patience("dio", "-o", "0,50ms,100ms", "--", "sh", "-c", 'test "$PATIENCE_ATTEMPT" = 2')
    assert r.returncode == 0
    assert r.stderr.count("starting...") == 2


# --- composition ---------------------------------------------------------------------


def test_rpr_runs_patience_which_retries(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    # Odd attempts fail, even ones succeed: each patience run needs two attempts.
    cmd = [
        "sh",
        "-c",
        'n=$(cat "$0" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$0"; '
        'echo "attempt $n"; test $((n % 2)) -eq 0',
        str(counter),
    ]
    r = subprocess.run(
        [RPR, "count", "--times", "3", "--", PATIENCE, "fixed", "--delay", "10ms", "--", *cmd],
        capture_output=True,
        text=True,
        env=env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert int(counter.read_text()) == 6
    assert r.stdout == "".join(f"attempt {n}\n" for n in range(1, 7))
    assert r.stderr.count("✅ [retry] Command succeeded after 2 attempts.") == 3
