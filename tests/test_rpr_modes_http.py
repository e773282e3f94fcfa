"""End to end: --http-aware on every mode, and --show-next, with the real executable."""

from __future__ import annotations

import re

import pytest

from modes_support import close_to, json_runs, pauses, spacings, usage_error
from tools import rpr

RETRY_AFTER_1 = [
    "sh",
    "-c",
    'printf "HTTP/1.1 429 Too Many Requests\\r\\nRetry-After: 1\\r\\n\\r\\n"',
]


def test_retry_after_lengthens_the_next_delay() -> None:
    runs, _, proc = json_runs(
        "interval",
        "--every",
        "100ms",
        "--times",
        "2",
        "--http-aware",
        "--json",
        "--",
        *RETRY_AFTER_1,
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(pauses(runs), [1.0], slack=0.3)


def test_without_http_aware_the_hint_is_ignored() -> None:
    runs, _, proc = json_runs(
        "interval", "--every", "100ms", "--times", "2", "--json", "--", *RETRY_AFTER_1
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(spacings(runs), [0.1], slack=0.5)


@pytest.mark.parametrize(
    "mode",
    [
        ["count", "--times", "2"],
        ["adaptive", "-b", "100ms", "--times", "2"],
        ["load-adaptive", "-b", "100ms", "--times", "2"],
        ["exponential", "-bd", "100ms", "-a", "2"],
        ["linear", "-inc", "100ms", "-a", "2"],
        ["fibonacci", "-bd", "100ms", "-a", "2"],
        ["polynomial", "-bd", "100ms", "-a", "2"],
        ["decorrelated-jitter", "-bd", "100ms", "-a", "2"],
    ],
)
def test_every_mode_honours_the_hint(mode: list[str]) -> None:
    runs, _, proc = json_runs(*mode, "--http-aware", "--json", "--", *RETRY_AFTER_1)
    assert proc.returncode == 0, proc.stderr
    assert close_to(pauses(runs), [1.0], slack=0.4)


def test_cron_honours_the_hint() -> None:
    # A hint of 2s on a per-second schedule: the next run is the first second after it.
    runs, summary, proc = json_runs(
        "cron",
        "--cron",
        "* * * * * *",
        "--times",
        "2",
        "--http-aware",
        "--json",
        "--",
        "sh",
        "-c",
        "echo Retry-After: 2",
    )
    assert proc.returncode == 0, proc.stderr
    assert 2.0 <= spacings(runs)[0] <= 3.3
    assert summary["skipped_ticks"] >= 1


def test_hints_are_clamped() -> None:
    cmd = ["sh", "-c", "echo Retry-After: 3600"]
    runs, _, proc = json_runs(
        "count",
        "--times",
        "2",
        "--http-aware",
        "--http-min-delay",
        "0s",
        "--http-max-delay",
        "300ms",
        "--json",
        "--",
        *cmd,
    )
    assert proc.returncode == 0, proc.stderr
    assert close_to(pauses(runs), [0.3], slack=0.2)
    cmd = ["sh", "-c", "echo Retry-After: 0"]
    runs, _, proc = json_runs(
        "count", "--times", "2", "--http-aware", "--http-min-delay", "500ms", "--json", "--", *cmd
    )
    assert close_to(pauses(runs), [0.5], slack=0.25)


def test_json_hints_and_custom_fields() -> None:
    body = ["sh", "-c", 'echo \'{"error": {"retry_after": 1}}\'']
    runs, _, _ = json_runs("count", "--times", "2", "--http-aware", "--json", "--", *body)
    assert close_to(pauses(runs), [1.0], slack=0.3)
    runs, _, _ = json_runs(
        "count", "--times", "2", "--http-aware", "--http-no-parse-json", "--json", "--", *body
    )
    assert close_to(pauses(runs), [0.0], slack=0.2)
    custom = ["sh", "-c", "echo '{\"wait_for\": 1}'"]
    runs, _, _ = json_runs("count", "--times", "2", "--http-aware", "--json", "--", *custom)
    assert close_to(pauses(runs), [0.0], slack=0.2)
    runs, _, _ = json_runs(
        "count",
        "--times",
        "2",
        "--http-aware",
        "--http-custom-fields",
        "other,wait_for",
        "--json",
        "--",
        *custom,
    )
    assert close_to(pauses(runs), [1.0], slack=0.3)


def test_empty_custom_fields_mean_none() -> None:
    """`--http-custom-fields ""` (the Go tool's default value) is accepted: no extra field."""
    custom = ["sh", "-c", "echo '{\"wait_for\": 1}'"]
    args = ["count", "--times", "2", "--http-aware", "--http-custom-fields", "", "--json"]
    runs, _, proc = json_runs(*args, "--", *custom)
    assert proc.returncode == 0, proc.stderr
    assert close_to(pauses(runs), [0.0], slack=0.2)


def test_header_parsing_can_be_switched_off() -> None:
    for flag in ("--http-no-parse-headers", "--no-http-parse-headers"):
        runs, _, _ = json_runs(
            "count", "--times", "2", "--http-aware", flag, "--json", "--", *RETRY_AFTER_1
        )
        assert close_to(pauses(runs), [0.0], slack=0.2), flag
    runs, _, _ = json_runs(
        "count",
        "--times",
        "2",
        "--http-aware",
        "--http-parse-headers",
        "--json",
        "--",
        *RETRY_AFTER_1,
    )
    assert close_to(pauses(runs), [1.0], slack=0.3)


def test_client_errors_need_http_trust_client() -> None:
    not_found = ["sh", "-c", 'printf "HTTP/1.1 404 Not Found\\r\\nRetry-After: 1\\r\\n\\r\\n"']
    runs, _, _ = json_runs("count", "--times", "2", "--http-aware", "--json", "--", *not_found)
    assert close_to(pauses(runs), [0.0], slack=0.2)
    runs, _, _ = json_runs(
        "count", "--times", "2", "--http-aware", "--http-trust-client", "--json", "--", *not_found
    )
    assert close_to(pauses(runs), [1.0], slack=0.3)


def test_the_hint_is_read_on_stderr_too_and_output_still_passes_through() -> None:
    proc = rpr(
        "count",
        "--times",
        "2",
        "--http-aware",
        "--",
        "sh",
        "-c",
        "echo body; echo Retry-After: 1 >&2",
    )
    assert proc.returncode == 0
    assert proc.stdout == "body\nbody\n"
    assert proc.stderr.count("Retry-After: 1") == 2


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--http-max-delay", "1m"], ["interval: --http-max-delay needs --http-aware"]),
        (["--http-trust-client"], ["--http-trust-client needs --http-aware"]),
        (
            ["--http-aware", "--http-min-delay", "5s", "--http-max-delay", "1s"],
            ["--http-min-delay 5s is above --http-max-delay 1s"],
        ),
        (["--http-aware", "--parallel", "2"], ["--http-aware", "--parallel"]),
        (
            ["--http-aware", "--http-parse-json", "--http-no-parse-json"],
            ["--http-parse-json and --http-no-parse-json contradict"],
        ),
        (
            ["--http-aware", "--http-custom-fields", "a,,b"],
            ['--http-custom-fields: "a,,b" is not a comma-separated list'],
        ),
        (
            ["--http-aware", "--http-max-delay", "soon"],
            ['--http-max-delay: "soon" is not a duration'],
        ),
    ],
)
def test_http_bad_input(args: list[str], fragments: list[str]) -> None:
    assert usage_error(rpr("interval", "--every", "1s", *args, "--", "true"), *fragments)


def test_show_next_on_a_fixed_interval() -> None:
    proc = rpr("interval", "-e", "300ms", "--times", "2", "--show-next", "--", "true")
    assert proc.returncode == 0
    delays = re.findall(
        r"^rpr: next run in (\S+) \(at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\)$", proc.stderr, re.M
    )
    assert delays[0] == "0s"
    assert re.fullmatch(r"2\d\d(\.\d)?ms|300ms", delays[1]), delays


@pytest.mark.parametrize(
    "mode",
    [
        ["exp", "-bd", "200ms", "-a", "2"],
        ["adaptive", "-b", "200ms", "--times", "2"],
        ["la", "-b", "200ms", "--times", "2"],
    ],
)
def test_show_next_on_every_mode(mode: list[str]) -> None:
    proc = rpr(*mode, "-n", "--", "true")
    assert proc.returncode == 0
    assert len(re.findall(r"^rpr: next run in ", proc.stderr, re.M)) >= 2


def test_show_next_says_when_the_schedule_is_complete() -> None:
    proc = rpr("exp", "-bd", "10ms", "-a", "1", "--show-next", "--", "true")
    assert "rpr: no next run: the schedule is complete" in proc.stderr
