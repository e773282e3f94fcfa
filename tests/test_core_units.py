"""Unit tests of the shared core's pure pieces: durations, option parser, stats, judging."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.cliparse import Option, UsageError, parse, parse_choice, parse_int
from patience.conditions import PatternError, compile_pattern, judge
from patience.durations import DurationError, format_duration, parse_duration
from patience.process import RunResult
from patience.stats import Distribution


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("300ms", 0.3),
        ("1.5s", 1.5),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1m0.5s", 60.5),
        ("0", 0.0),
        ("250us", 0.00025),
        ("10ns", 1e-8),
        ("+5s", 5.0),
        (" 5s ", 5.0),
        ("-0s", 0.0),
    ],
)
def test_parse_duration_accepts_go_syntax_and_days(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5", "has no unit (try 5s)"),
        ("", "empty duration"),
        ("abc", "is not a duration"),
        ("5x", 'unknown unit "x"'),
        ("-5s", "is negative"),
        ("1..5s", "is not a duration"),
        ("s", "is not a duration"),
        ("5s3", "ends in 3 with no unit"),
    ],
)
def test_parse_duration_errors_name_the_fix(text: str, message: str) -> None:
    with pytest.raises(DurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_duration(text)


@given(st.floats(min_value=0.001, max_value=10 * 86400, allow_nan=False))
def test_format_duration_round_trips(seconds: float) -> None:
    back = parse_duration(format_duration(seconds))
    # Formatting rounds: to 0.1 ms below 1 s, to 1 ms below 1 min, to 1 s above.
    tolerance = 1e-4 if seconds < 1 else (1e-3 if seconds < 60 else 0.5)
    assert abs(back - seconds) <= tolerance


OPTS = [
    Option("every", "--every", "-e", convert=parse_duration),
    Option("times", "--times", "-t", convert=parse_int(1)),
    Option("quiet", "--quiet", "-q"),
    Option("auto", "--auto", default=True, negatable=True),
    Option("mode", "--mode", convert=parse_choice("a", "b")),
    Option("base", "--base-delay", "-bd", convert=parse_duration),
]


def test_parser_reads_every_spelling() -> None:
    p = parse(
        OPTS, ["-e", "1s", "--times=3", "-q", "--no-auto", "-bd", "2s", "--", "echo", "-x"], "t"
    )
    assert p.values["every"] == 1.0
    assert p.values["times"] == 3
    assert p.values["quiet"] is True
    assert p.values["auto"] is False
    assert p.values["base"] == 2.0
    assert p.command == ["echo", "-x"]
    assert p.explicit == {"every", "times", "quiet", "auto", "base"}


def test_parser_attached_short_value_and_bool_values() -> None:
    p = parse(OPTS, ["-t5", "--auto=false", "--quiet=true", "--"], "t")
    assert p.values["times"] == 5
    assert p.values["auto"] is False
    assert p.values["quiet"] is True
    assert p.saw_separator and p.command == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--evry", "1s"], "unknown flag --evry (did you mean --every?)"),
        (["--every"], "--every needs a value"),
        (["--times", "0"], "--times: 0 is too small (at least 1)"),
        (["--times", "x"], '--times: "x" is not a whole number'),
        (["--mode", "c"], '--mode: "c" is not one of a, b'),
        (["--quiet=maybe"], 'expected true or false, got "maybe"'),
        (["--every", "5"], '--every: "5" has no unit (try 5s)'),
    ],
)
def test_parser_errors(args: list[str], message: str) -> None:
    with pytest.raises(UsageError) as info:
        parse(OPTS, args, "t")
    assert message in str(info.value)


def test_distribution_percentiles_within_one_percent() -> None:
    d = Distribution()
    values = [i / 1000 for i in range(1, 10001)]
    for v in values:
        d.add(v)
    assert d.count == 10000
    assert d.minimum == 0.001 and d.maximum == 10.0
    for p in (50, 95, 99):
        exact = values[math.ceil(p / 100 * len(values)) - 1]
        assert abs(d.percentile(p) - exact) / exact < 0.011
    assert len(d.buckets) < 1000


@given(st.lists(st.floats(min_value=0, max_value=1e5), min_size=1, max_size=200))
def test_distribution_percentile_is_within_seen_range(values: list[float]) -> None:
    d = Distribution()
    for v in values:
        d.add(v)
    for p in (0, 50, 99, 100):
        assert min(values) <= d.percentile(p) <= max(values)


def _result(code: int | None = 0, sig: int | None = None, timed_out: bool = False) -> RunResult:
    return RunResult(0.0, 0.1, code, sig, timed_out, False)


def test_judge_precedence() -> None:
    assert judge(_result(0), True, True) == (False, "failure pattern matched")
    assert judge(_result(1), False, True) == (True, "success pattern matched")
    assert judge(_result(0), False, False) == (True, "exit code 0")
    assert judge(_result(3), False, False) == (False, "exit code 3")
    assert judge(_result(None, 9), False, False) == (False, "killed by signal 9")
    assert judge(_result(None, 15, True), False, False) == (False, "timed out")
    assert _result(None, 15, True).status == 124
    assert _result(None, 9).status == 137


def test_compile_pattern_error_names_option() -> None:
    with pytest.raises(PatternError, match=r'--success-pattern: invalid regular expression "\("'):
        compile_pattern("(", "--success-pattern")
    assert compile_pattern("ok", "--x", case_insensitive=True).search("OK")
