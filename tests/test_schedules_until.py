"""The --until stop conditions as pure objects: wall-clock times, output matches, changes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from repeater.until import UntilChanges, UntilMatch, parse_until_time

RECORD = None  # the output conditions never look at the run record


def local(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_clock_time_later_today() -> None:
    assert parse_until_time("17:30", local("2026-05-08 12:00")) == local("2026-05-08 17:30")
    assert parse_until_time("17:30:15", local("2026-05-08 12:00")) == local("2026-05-08 17:30:15")
    assert parse_until_time("9:05", local("2026-05-08 08:00")) == local("2026-05-08 09:05")


def test_a_clock_time_already_passed_means_tomorrow() -> None:
    assert parse_until_time("17:30", local("2026-05-08 18:00")) == local("2026-05-09 17:30")
    assert parse_until_time("17:30", local("2026-05-08 17:30")) == local("2026-05-09 17:30")


def test_iso_times_local_or_with_an_offset() -> None:
    now = local("2026-05-08 12:00")
    assert parse_until_time("2026-05-09T08:00", now) == local("2026-05-09 08:00")
    utc = datetime(2026, 5, 9, 8, 0, tzinfo=UTC).timestamp()
    assert parse_until_time("2026-05-09T10:00+02:00", now) == utc
    assert parse_until_time("2026-05-09T08:00:00Z", now) == utc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("soon", '"soon" is not a time (try 17:30, 17:30:15 or 2026-05-09T17:30)'),
        ("", '"" is not a time'),
        ("25:00", '"25:00" is not a time of day (hours 0-23, minutes 0-59)'),
        ("12:60", '"12:60" is not a time of day'),
        ("2020-01-01T00:00", '"2020-01-01T00:00" is in the past (give a future time)'),
        ("5m", '"5m" is not a time'),
    ],
)
def test_bad_until_times(text: str, message: str) -> None:
    with pytest.raises(ValueError) as exc:
        parse_until_time(text, local("2026-05-08 12:00"))
    assert str(exc.value).startswith(message)


def run_output(cond: UntilMatch | UntilChanges, *chunks: tuple[int, bytes]) -> bool:
    sink = cond.sink()
    for stream, data in chunks:
        sink.feed(stream, data)
    sink.close()
    return cond.met(RECORD)  # type: ignore[arg-type]


def test_until_match_looks_at_both_streams_line_by_line() -> None:
    cond = UntilMatch(re.compile(r"ready \d+"))
    assert not run_output(cond, (1, b"starting\nnot ready\n"))
    assert run_output(cond, (2, b"warm"), (2, b"up\nready 3"))
    # Each run starts afresh.
    assert not run_output(cond, (1, b"starting\n"))


def test_until_contains_is_an_escaped_pattern() -> None:
    cond = UntilMatch(re.compile(re.escape("a.b[1]")))
    assert not run_output(cond, (1, b"axb[1]\n"))
    assert run_output(cond, (1, b"x a.b[1] y\n"))


def test_until_changes_compares_with_the_previous_run() -> None:
    cond = UntilChanges()
    assert not run_output(cond, (1, b"same\n"))  # nothing to compare the first run with
    assert not run_output(cond, (1, b"sa"), (1, b"me\n"))  # chunking does not matter
    assert run_output(cond, (1, b"other\n"))
    assert not run_output(cond, (1, b"other\n"))
    # The same bytes on the other stream are a change.
    assert run_output(cond, (2, b"other\n"))


def test_until_changes_holds_a_digest_not_the_output() -> None:
    cond = UntilChanges()
    sink = cond.sink()
    block = b"x" * 65536
    for _ in range(200):  # 12.5 MiB
        sink.feed(1, block)
    digest = cond.digest.value()
    assert [len(d) for d in digest] == [64, 64]
    assert not cond.met(RECORD)  # type: ignore[arg-type]
    assert cond.previous == digest


def test_clock_time_rolls_over_midnight() -> None:
    now = local("2026-05-08 23:59:30")
    assert parse_until_time("00:00", now) - now == pytest.approx(
        timedelta(seconds=30).total_seconds()
    )
