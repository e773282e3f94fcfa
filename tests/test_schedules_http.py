"""--http-aware as a wrapper schedule: hints read from a run's output, clamped, delaying
(never advancing) the wrapped mode's next run; and --show-next's announcements."""

from __future__ import annotations

import pytest

from repeater.backoff_schedules import Backoff
from repeater.http_timing import HintReader, HttpAware
from repeater.schedules import FixedRate, Outcome, Schedule
from repeater.show_next import ShowNext

WALL = 1_700_000_000.0


def hinted(hint: float | None, success: bool = False) -> Outcome:
    return Outcome(success, 0.1, 0 if success else 1, hint)


def test_a_hint_delays_the_next_run() -> None:
    s = HttpAware(FixedRate(1.0), min_delay=0.5, max_delay=60.0)
    assert s.first(0.0) == 0.0
    assert s.next(0.1, hinted(5.0)) == pytest.approx(5.1)


def test_without_a_hint_the_mode_decides() -> None:
    s = HttpAware(FixedRate(1.0), min_delay=0.5, max_delay=60.0)
    s.first(0.0)
    assert s.next(0.1, hinted(None)) == 1.0
    assert s.next(1.1, None) == 2.0


def test_a_hint_never_brings_a_run_forward() -> None:
    s = HttpAware(FixedRate(10.0), min_delay=0.0, max_delay=60.0)
    s.first(0.0)
    assert s.next(0.1, hinted(2.0)) == 10.0


def test_hints_are_clamped_to_min_and_max() -> None:
    s = HttpAware(FixedRate(0.1), min_delay=1.0, max_delay=30.0)
    s.first(0.0)
    assert s.next(0.05, hinted(0.0)) == pytest.approx(1.05)
    assert s.next(2.0, hinted(3600.0)) == pytest.approx(32.0)


def test_the_wrapped_schedule_may_still_end() -> None:
    from patience.backoff import make_strategy

    s = HttpAware(Backoff(make_strategy("exp"), attempts=1), min_delay=1.0, max_delay=30.0)
    s.first(0.0)
    assert s.next(0.1, hinted(5.0)) is None


def test_skipped_ticks_of_the_wrapped_schedule_are_reported() -> None:
    s = HttpAware(FixedRate(1.0), min_delay=1.0, max_delay=30.0)
    s.first(0.0)
    s.next(0.1, hinted(5.0))  # runs again at 5.1; ticks 2..5 pass meanwhile
    s.next(5.2, hinted(None))
    assert s.skipped == 4


def test_http_aware_needs_each_outcome() -> None:
    inner = FixedRate(1.0)
    assert not inner.sequential
    assert HttpAware(inner, 1.0, 30.0).sequential


def read(text: str, *, stream: int = 1, **kw: object) -> float | None:
    reader = HintReader(lambda: WALL, **kw)  # type: ignore[arg-type]
    sink = reader.sink()
    sink.feed(stream, text.encode())
    sink.close()
    return reader.hint()


def test_retry_after_in_a_429_response() -> None:
    assert read("HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\n\r\n") == 7.0
    assert read("< HTTP/2 503\n< retry-after: 1.5\n", stream=2) == 1.5


def test_json_hint_and_custom_fields() -> None:
    assert read('{"error": {"retry_after": 4}}') == 4.0
    assert read('{"wait_for": 9}') is None
    assert read('{"wait_for": 9}', extra_fields=["wait_for"]) == 9.0


def test_parse_switches() -> None:
    text = 'HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\n\r\n{"retry_after": 3}'
    assert read(text) == 7.0
    assert read(text, parse_headers=False) == 3.0
    assert read(text, parse_json=False) == 7.0
    assert read(text, parse_headers=False, parse_json=False) is None


def test_reset_time_is_read_against_the_wall_clock() -> None:
    text = f"X-RateLimit-Remaining: 0\nX-RateLimit-Reset: {int(WALL) + 30}\n"
    assert read(text) == 30.0


def test_client_errors_are_ignored_unless_trusted() -> None:
    text = "HTTP/1.1 404 Not Found\r\nRetry-After: 15\r\n\r\n"
    assert read(text) is None
    assert read(text, trust_client=True) == 15.0
    assert read("HTTP/1.1 403 Forbidden\r\nRetry-After: 15\r\n") == 15.0
    # The last response counts: a redirect followed by a 429.
    assert read("HTTP/1.1 404 Nope\r\n\r\nHTTP/1.1 429 Slow\r\nRetry-After: 2\r\n") == 2.0


def test_each_run_starts_with_a_fresh_head() -> None:
    reader = HintReader(lambda: WALL)
    reader.sink().feed(1, b"Retry-After: 5\n")
    assert reader.hint() == 5.0
    reader.sink().feed(1, b"all good\n")
    assert reader.hint() is None


def test_only_the_head_of_the_output_is_kept() -> None:
    reader = HintReader(lambda: WALL)
    sink = reader.sink()
    sink.feed(1, b"x" * 20000 + b"\nRetry-After: 5\n")
    assert reader.hint() is None


class Steps(Schedule):
    def __init__(self, dues: list[float | None]) -> None:
        self.dues = dues

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        return self.dues.pop(0)


def test_show_next_announces_each_due_time() -> None:
    lines: list[str] = []
    s = ShowNext(Steps([12.5, None]), lines.append, wall=lambda: 100.0, describe=str)
    assert s.first(10.0) == 10.0
    assert s.next(10.0, None) == 12.5
    assert s.next(12.5, None) is None
    assert lines == [
        "rpr: next run in 0s (at 100.0)\n",
        "rpr: next run in 2.5s (at 102.5)\n",
        "rpr: no next run: the schedule is complete\n",
    ]


def test_show_next_keeps_the_wrapped_properties() -> None:
    from patience.backoff import make_strategy

    assert ShowNext(Backoff(make_strategy("exp"), None), print, wall=lambda: 0.0).sequential
    fixed = ShowNext(FixedRate(1.0), lambda _t: None, wall=lambda: 0.0)
    assert not fixed.sequential
    fixed.first(0.0)
    fixed.next(3.5, None)
    assert fixed.skipped == 3
