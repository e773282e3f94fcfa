"""The options every `rpr` mode takes, in the groups its help shows them: stop conditions,
timing, rate limit, HTTP-aware timing, patterns, output, daemon.

Parsed on every start, so this module costs nothing more: the converters import what they
need when called.
"""

from __future__ import annotations

from patience.cliparse import Option, parse_choice, parse_int
from patience.daemon_options import DAEMON_OPTIONS
from patience.durations import offset_list, parse_duration, positive_duration
from patience.numbers import decimal
from patience.settings import Limit
from repeater.schedules import OVERRUN_POLICIES

__all__ = [
    "COMMON_GROUPS",
    "HTTP_OPTIONS",
    "OUTPUT_OPTIONS",
    "PATTERN_OPTIONS",
    "RATE_OPTIONS",
    "SHOW_NEXT_OPTION",
    "STOP_OPTIONS",
    "TIMING_OPTIONS",
    "UNTIL_OPTIONS",
    "jitter_spec",
]


def jitter_spec(text: str) -> str:
    """Validated now, resolved against --every later: "10%" or a duration."""
    if text.endswith("%"):
        try:
            pct = decimal(text[:-1])
        except ValueError:
            raise ValueError(f'"{text}" is not a percentage (try 10%)') from None
        if not 0 <= pct <= 100:
            raise ValueError(f'"{text}" must be between 0% and 100%')
    else:
        parse_duration(text)
    return text


def _names(text: str) -> list[str]:
    """--http-custom-fields: "" (as the Go tool's default) means none."""
    if not text.strip():
        return []
    names = [n.strip() for n in text.split(",")]
    if not all(names):
        raise ValueError(f'"{text}" is not a comma-separated list of field names (e.g. wait,retry)')
    return names


def _until_time(text: str) -> float:
    import time

    from repeater.until import parse_until_time

    return parse_until_time(text, time.time())


UNTIL_OPTIONS = [
    Option(
        "until",
        "--until",
        convert=_until_time,
        metavar="TIME",
        help="start no run after TIME (17:30, 17:30:15 or an ISO date-time; local time)",
    ),
    Option(
        "until_contains",
        "--until-contains",
        convert=str,
        metavar="STR",
        help="stop after a run whose output has a line containing STR",
    ),
    Option(
        "until_match",
        "--until-match",
        convert=str,
        metavar="RE",
        help="stop after a run whose output has a line matching RE",
    ),
    Option(
        "until_changes",
        "--until-changes",
        help="stop after a run whose output differs from the previous run's",
    ),
]
SHOW_NEXT_OPTION = Option(
    "show_next", "--show-next", "-n", help="say when the next run is due (stderr)"
)
HTTP_OPTIONS = [
    Option(
        "http_aware",
        "--http-aware",
        help="honour a server's retry hint in the output (Retry-After, X-RateLimit-*, JSON)",
    ),
    Option(
        "http_min_delay",
        "--http-min-delay",
        convert=parse_duration,
        default=1.0,
        metavar="DUR",
        help="wait at least DUR when a hint is found",
    ),
    Option(
        "http_max_delay",
        "--http-max-delay",
        convert=parse_duration,
        default=1800.0,
        metavar="DUR",
        help="wait at most DUR, whatever the hint",
    ),
    Option(
        "http_parse_headers",
        "--http-parse-headers",
        default=True,
        negatable=True,
        help="read hints from HTTP headers",
    ),
    Option("http_no_parse_headers", "--http-no-parse-headers", help="ignore HTTP headers"),
    Option(
        "http_parse_json",
        "--http-parse-json",
        default=True,
        negatable=True,
        help="read hints from JSON fields",
    ),
    Option("http_no_parse_json", "--http-no-parse-json", help="ignore JSON fields"),
    Option(
        "http_trust_client",
        "--http-trust-client",
        help="also honour hints in 4xx responses other than 429 and 403",
    ),
    Option(
        "http_custom_fields",
        "--http-custom-fields",
        convert=_names,
        metavar="A,B",
        help="more JSON fields that hold a retry delay in seconds",
    ),
]


STOP_OPTIONS = [
    Option(
        "every",
        "--every",
        "-e",
        convert=positive_duration,
        metavar="DUR",
        help="start a run every DUR, on absolute deadlines (no drift)",
    ),
    Option("times", "--times", "-t", convert=parse_int(1), metavar="N", help="stop after N runs"),
    Option(
        "for_",
        "--for",
        "-f",
        convert=positive_duration,
        metavar="DUR",
        help="start no run later than DUR after the start",
    ),
    Option("until_success", "--until-success", help="stop after the first successful run (exit 0)"),
    Option("until_failure", "--until-failure", help="stop after the first failed run"),
    Option("stop_on_failure", "--stop-on-failure", help="same as --until-failure"),
    *UNTIL_OPTIONS,
    Option(
        "max_failures",
        "--max-failures",
        convert=parse_int(1),
        metavar="N",
        help="stop once N runs have failed",
    ),
]
TIMING_OPTIONS = [
    Option(
        "timeout",
        "--timeout",
        convert=positive_duration,
        metavar="DUR",
        help="a run still going after DUR is sent SIGTERM, and fails (reason timeout)",
    ),
    Option(
        "kill_after",
        "--kill-after",
        convert=parse_duration,
        default=5.0,
        metavar="DUR",
        help="SIGKILL a run that outlives SIGTERM by DUR",
    ),
    Option(
        "parallel",
        "--parallel",
        convert=parse_int(1, 1024),
        default=1,
        metavar="N",
        help="allow up to N runs in flight, so the rate holds when runs are slow",
    ),
    Option(
        "jitter",
        "--jitter",
        convert=jitter_spec,
        metavar="J",
        help="delay each run by a random 0..J (10%% of --every, or a duration); no drift",
    ),
    Option(
        "immediate",
        "--immediate",
        default=True,
        negatable=True,
        help="first run at once (--no-immediate waits one interval)",
    ),
    Option(
        "on_overrun",
        "--on-overrun",
        convert=parse_choice(*OVERRUN_POLICIES),
        default="skip",
        metavar="POLICY",
        help="a run outlasts its interval: skip missed ticks, burst them, or delay the phase",
    ),
]
RATE_OPTIONS = [
    Option(
        "rate",
        "--rate",
        "-r",
        convert=Limit.parse,
        metavar="N/DUR",
        help="start at most N runs in any window of DUR (e.g. 100/1h, 10/s); exact",
    ),
    Option(
        "retry_pattern",
        "--retry-pattern",
        "-p",
        convert=offset_list,
        metavar="OFFSETS",
        help="after a failure, retry at these offsets from it (e.g. 0,10m,30m)",
    ),
]
PATTERN_OPTIONS = [
    Option(
        "success_pattern",
        "--success-pattern",
        convert=str,
        metavar="RE",
        help="a run whose output matches RE succeeds (unless the failure pattern matches)",
    ),
    Option(
        "failure_pattern",
        "--failure-pattern",
        convert=str,
        metavar="RE",
        help="a run whose output matches RE fails, whatever its exit code",
    ),
    Option("case_insensitive", "--case-insensitive", help="patterns ignore case"),
]
OUTPUT_OPTIONS = [
    Option("stream", "--stream", "-s", help="pass the command's output through (the default)"),
    Option("quiet", "--quiet", "-q", help="no command output, no summary; errors only"),
    Option("verbose", "--verbose", "-v", help="a line per run on stderr"),
    Option("stats_only", "--stats-only", help="print only the summary, on stdout"),
    Option("json", "--json", help="a JSON object per run, then a summary object, on stdout"),
    Option(
        "output_prefix",
        "--output-prefix",
        "-o",
        convert=str,
        metavar="STR",
        help="prefix each line of the command's output with STR",
    ),
    Option("progress", "--progress", help="a live status line on stderr (when a terminal)"),
    SHOW_NEXT_OPTION,
]
COMMON_GROUPS = [
    ("Stop conditions", STOP_OPTIONS),
    ("Timing", TIMING_OPTIONS),
    ("Rate limit", RATE_OPTIONS),
    ("HTTP-aware timing", HTTP_OPTIONS),
    ("Patterns", PATTERN_OPTIONS),
    ("Output", OUTPUT_OPTIONS),
    ("Daemon", DAEMON_OPTIONS),
]
