"""The typed settings the command lines build and the library takes (patience.settings,
patience.settings.daemon, repeater.run): each refuses a bad value with a message naming it,
the strategies' parameters are checked against their declarations, and `run(settings)` runs
a real command in-process for both tools."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.backoff import DECLARATIONS
from patience.cliparse import Option, parse
from patience.conditions import PatternError
from patience.settings import (
    FAIL_MODES,
    Limit,
    RateLimitError,
    RetrySettings,
    RunSettings,
    StrategySettings,
)
from patience.settings.daemon import DaemonSchedule, DaemonSettings
from repeater.run import OutputSettings, RepeatSettings
from repeater.schedules import BackToBack, RetryPattern
from repeater.stop import StopConditions

# ---- StrategySettings ---------------------------------------------------------------------


def test_strategy_settings_take_the_declared_defaults() -> None:
    for name, declaration in DECLARATIONS.items():
        settings = StrategySettings(name)
        assert set(settings.params) == {p.name for p in declaration.params}
    exponential = StrategySettings("exp")  # an alias gives the canonical name
    assert exponential.name == "exponential"
    assert exponential.number("base_delay") == 1.0
    assert exponential.number("multiplier") == 2.0
    assert StrategySettings("diophantine").offsets("retry_offsets") == (0.0, 600.0, 1800.0)
    assert StrategySettings("adaptive").whole("memory_window") == 50
    assert StrategySettings("http-aware", {"fallback": "fib"}).text("fallback") == "fibonacci"


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("expo", {}, 'unknown strategy "expo" (one of fixed, exponential,'),
        ("fixed", {"base_delay": 1.0}, "fixed has no parameter base_delay (it takes --delay)"),
        ("exponential", {"multiplier": 150.0}, "150 is too large (at most 100.0)"),
        ("polynomial", {"exponent": 0.0}, "0 is out of range (more than 0, at most 10)"),
        ("exponential", {"base_delay": 0.0}, '"0" must be more than zero'),
        ("exponential", {"base_delay": "1s"}, "--base-delay: '1s' is not a number"),
        ("exponential", {"base_delay": True}, "--base-delay: True is not a number"),
        ("adaptive", {"memory_window": 2.5}, "--memory-window: 2.5 is not a whole number"),
        ("http-aware", {"fallback": "adaptive"}, '"adaptive" is not a backoff strategy'),
        ("diophantine", {"retry_offsets": (5.0, 1.0)}, "are not in order from 0"),
        ("diophantine", {"retry_offsets": ()}, "is not a list of offsets"),
        ("diophantine", {"retry_offsets": "0,x"}, '"x"'),
        ("diophantine", {"retry_offsets": tuple(range(1001))}, "more than the 1000 attempts"),
    ],
)
def test_strategy_settings_refuse_what_the_flags_refuse(
    name: str, params: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError) as caught:
        StrategySettings(name, params)
    assert message in str(caught.value)


def test_diophantine_rate_is_a_limit_checked_with_its_flags_named() -> None:
    settings = StrategySettings("diophantine", {"rate_limit": 10, "window": 60.0})
    assert settings.rate() == Limit(10, 60.0)
    assert StrategySettings("exponential").rate() is None
    with pytest.raises(RateLimitError) as caught:
        StrategySettings("diophantine", {"rate_limit": 10, "window": 0.0001})
    assert str(caught.value).startswith("--rate-limit/--window: rate-limit window 100us is under")


@given(st.sampled_from(sorted(set(DECLARATIONS) - {"diophantine"})), st.data())
def test_any_value_within_the_declared_bounds_is_taken(name: str, data: st.DataObject) -> None:
    """(diophantine's window is a rate limit's too, bounded as Limit says: tested above)"""
    params: dict[str, object] = {}
    for param in DECLARATIONS[name].params:
        if param.kind in ("duration", "number") and param.low is not None:
            high = param.high if param.high is not None else param.low + 1000.0
            value = data.draw(st.floats(param.low, high, exclude_min=param.low_open))
            params[param.name] = value
    settings = StrategySettings(name, params)
    for key, value in params.items():
        assert settings.number(key) == value


def test_plain_strategy_settings_make_their_strategy() -> None:
    strategy = StrategySettings("linear", {"increment": 2.0, "max_delay": 5.0}).strategy()
    assert [strategy.next_delay(n) for n in (1, 2, 3)] == [2.0, 4.0, 5.0]


# ---- RunSettings, RetrySettings -----------------------------------------------------------


def test_run_settings_compile_their_patterns() -> None:
    run = RunSettings(["echo"], success_pattern="ok", failure_pattern="FAIL", case_insensitive=True)
    assert run.success_pattern is not None and run.success_pattern.search("OK")
    assert run.failure_pattern is not None and run.failure_pattern.search("fail")
    assert RunSettings(["true"]).success_pattern is None
    assert RunSettings(["true"]).command == ("true",)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"command": []}, "no command to run"),
        ({"timeout": 0.0}, "timeout 0.0 is not a positive duration"),
        ({"timeout": float("nan")}, "timeout nan is not a positive duration"),
        ({"kill_after": -1.0}, "kill-after -1.0 is not a duration"),
    ],
)
def test_run_settings_refuse_bad_values(kwargs: dict[str, object], message: str) -> None:
    command = kwargs.pop("command", ["true"])
    with pytest.raises(ValueError, match=re.escape(message)):
        RunSettings(command, **kwargs)  # type: ignore[arg-type]


def test_a_bad_pattern_names_its_flag() -> None:
    with pytest.raises(PatternError, match='--failure-pattern: invalid regular expression "\\("'):
        RunSettings(["true"], failure_pattern="(")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"attempts": 0}, "--attempts 0 is not within 1..1000"),
        ({"attempts": 1001}, "--attempts 1001 is not within 1..1000"),
        ({"attempts": True}, "--attempts True is not within 1..1000"),
        ({"max_time": 0.0}, "--max-time 0.0 is not a positive duration"),
        ({"retry_on": frozenset({256})}, "--retry-on: exit statuses lie within 0..255"),
    ],
)
def test_retry_settings_refuse_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        RetrySettings(RunSettings(["true"]), StrategySettings("fixed"), **kwargs)  # type: ignore[arg-type]


def test_the_first_planned_attempt_must_fit_the_budget() -> None:
    planned = StrategySettings("diophantine", {"retry_offsets": (5.0, 10.0)})
    with pytest.raises(ValueError) as caught:
        RetrySettings(RunSettings(["true"]), planned, max_time=1.0)
    assert str(caught.value) == (
        "--max-time 1s ends before the first planned attempt (--retry-offsets starts at 5s)"
    )
    assert RetrySettings(RunSettings(["true"]), planned, max_time=5.0).max_time == 5.0


# ---- DaemonSettings, DaemonSchedule -------------------------------------------------------


def _daemon(**kwargs: object) -> DaemonSettings:
    base: dict[str, object] = {
        "tool": "repeater",
        "prog": "rpr",
        "socket_path": "/tmp/x.sock",
        "resource_id": "api",
    }
    return DaemonSettings(**{**base, **kwargs})  # type: ignore[arg-type]


def test_daemon_settings_defaults() -> None:
    settings = _daemon(labels={"mode": "count"})
    assert settings.fail_mode == "share" and settings.fail_mode in FAIL_MODES
    assert settings.timeout == 5.0 and settings.auto_start and settings.coordinated
    assert settings.limit is None and not settings.paced
    assert settings.labels == {"mode": "count"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tool": "curl"}, 'tool "curl" is neither repeater nor patience'),
        ({"fail_mode": "open"}, 'fail mode "open" is none of share, full, closed'),
        ({"timeout": 0.0}, "daemon timeout 0.0 is not a positive duration"),
        ({"timeout": float("inf")}, "daemon timeout inf is not a positive duration"),
    ],
)
def test_daemon_settings_refuse_bad_values(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        _daemon(**kwargs)


def test_daemon_schedule_as_register_schedule_carries_it() -> None:
    assert DaemonSchedule("count", count=5).message() == {
        "type": "count",
        "count": 5,
        "coordination": True,
    }
    assert DaemonSchedule("cron", interval=300.0).message() == {
        "type": "cron",
        "interval": 300.0,
        "coordination": True,
    }
    with pytest.raises(ValueError, match='schedule "weekly" is none of interval, count'):
        DaemonSchedule("weekly")


# ---- rpr's OutputSettings, RepeatSettings -------------------------------------------------


def test_output_and_repeat_settings_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match='output "loud" is none of stream, quiet'):
        OutputSettings("loud")
    run, stop = RunSettings(["true"]), StopConditions(times=1)
    with pytest.raises(ValueError, match=re.escape("--parallel 0 is not within 1..1024")):
        RepeatSettings(run, BackToBack(), stop, parallel=0)
    with pytest.raises(ValueError, match="--parallel needs a fixed schedule"):
        RepeatSettings(run, RetryPattern(BackToBack(), [0.0, 1.0]), stop, parallel=2)
    assert RepeatSettings(run, BackToBack(), stop, parallel=2).parallel == 2


# ---- the command line's typed readers -----------------------------------------------------


def test_parsed_readers_give_typed_values_and_defaults() -> None:
    options = [
        Option("n", "--n", convert=int, default=3),
        Option("x", "--x", convert=float, default=2.0),
        Option("t", "--t", convert=str),
        Option("f", "--f"),
        Option("rate", "--rate", convert=Limit.parse),
    ]
    parsed = parse(options, ["--x", "1.5", "--f", "--rate", "10/s"], "test")
    assert parsed.whole("n") == 3 and parsed.maybe_whole("n") == 3
    assert parsed.number("x") == 1.5
    assert parsed.text("t") is None and parsed.maybe_number("t") is None
    assert parsed.flag("f") is True
    assert parsed.value("rate", Limit) == Limit(10, 1.0)
    assert parsed.value("t", Limit) is None


# ---- run(settings), in-process with real commands -----------------------------------------


def test_patience_run_retries_until_attempts_run_out(tmp_path: Path) -> None:
    from patience.run import run

    marker = tmp_path / "tries"
    command = ["sh", "-c", f"echo x >> {marker}; exit 3"]
    settings = RetrySettings(
        RunSettings(command),
        StrategySettings("fixed", {"delay": 0.0}),
        attempts=3,
        quiet=True,
    )
    assert run(settings) == 3
    assert marker.read_text() == "x\nx\nx\n"


def test_rpr_run_repeats_as_its_settings_say(tmp_path: Path) -> None:
    from repeater.run import run

    marker = tmp_path / "runs"
    settings = RepeatSettings(
        RunSettings(["sh", "-c", f"echo x >> {marker}"]),
        BackToBack(),
        StopConditions(times=4),
        output=OutputSettings("quiet"),
    )
    assert run(settings) == 0
    assert marker.read_text() == "x\n" * 4
