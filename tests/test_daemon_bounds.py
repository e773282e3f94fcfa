"""Bounded by the daemon, never by the client: what one request may ask for (tokens, declared
limits, planned and registered attempts, JSON nesting) is checked before it costs memory or
time, and what is allowed costs memory that does not grow with the numbers asked for. Each test
drives a real daemon over its real socket and reads its memory from /proc (VmRSS)."""

from __future__ import annotations

import json
import logging
import time

import pytest

from daemon_support import Daemon, Raw, running
from patience.daemon import protocol
from patience.daemon.coordinator import Coordinator
from patience.daemon.framing import Session
from patience.daemon.handlers import Handlers
from patience.daemon.logthrottle import LogThrottle

HANDSHAKE_V2 = '{"type":"handshake","versions":["2.0"],"client_id":"greedy","tool":"repeater"}'
HANDSHAKE_V1 = '{"client":"patience-cli","type":"handshake","version":"1.0"}'
MIB = 1024  # VmRSS is in KiB


def replies(raw: Raw, count: int) -> list[dict[str, object]]:
    out = []
    for _ in range(count):
        line = raw.line()
        assert line, "the daemon closed the connection"
        out.append(json.loads(line))
    return out


def ping_time(daemon: Daemon) -> float:
    """Seconds another client waits for a pong (asked while the daemon works on the rest)."""
    with daemon.raw() as raw:
        started = time.monotonic()
        assert raw.ask('{"type":"ping"}')["type"] == "pong"
        return time.monotonic() - started


def test_acquires_of_huge_token_counts_are_refused_and_allowed_ones_cost_no_memory() -> None:
    """The reported line (10^8 tokens of a 2^40-per-10-years limit) once stored one log entry
    per token: ~415 MB and seconds each, 7 of them killed the daemon. Now it is refused by
    name, and the largest allowed (10^6 tokens) is one entry of the log, however many tokens."""
    hostile = json.dumps(
        {
            "type": "acquire",
            "resource_id": "x:1",
            "tokens": 100_000_000,
            "limit": 1 << 40,
            "window": 315359999,
        }
    )
    allowed = hostile.replace("100000000", str(protocol.MAX_TOKENS))
    with running() as daemon, daemon.raw() as raw:
        assert raw.ask(HANDSHAKE_V2)["status"] == "ok"
        before = daemon.rss_kib()
        raw.send("".join(line + "\n" for line in [hostile] * 10 + [allowed] * 10))
        assert ping_time(daemon) < 1.0
        answers = replies(raw, 20)
        assert (
            answers[:10]
            == [
                {
                    "type": "error",
                    "error": "invalid acquire format: tokens: 100000000 at once is more than 1000000"
                    " (ask for at most 1000000 in one acquire)",
                }
            ]
            * 10
        )
        assert all(answer["granted"] is True for answer in answers[10:]), answers[10:]
        grown = daemon.rss_kib() - before
        print(f"daemon RSS grew {grown} KiB over 10 refused and 10 granted acquires")
        assert grown < 20 * MIB


DECLARED = [
    (
        '{"type":"acquire","resource_id":"api","tokens":5,"limit":3,"window":1}',
        "invalid acquire format: tokens: 5 at once can never fit the declared limit of 3"
        " (ask for at most 3, or declare a larger limit)",
    ),
    (
        '{"type":"acquire","resource_id":"api","limit":3,"window":0.0001}',
        "invalid acquire format: window: rate-limit window 100us is under 1ms (try 1ms or more)",
    ),
    (
        '{"type":"acquire","resource_id":"api","limit":3,"window":315360001}',
        "invalid acquire format: Expected `float` <= 315360000.0 - at `$.window`",
    ),
    (
        '{"type":"acquire","resource_id":"api","limit":1099511627777,"window":1}',
        "invalid acquire format: Expected `int` <= 1099511627776 - at `$.limit`",
    ),
]


def test_declared_limits_out_of_bounds_are_refused_by_field() -> None:
    with running() as daemon, daemon.raw() as raw:
        assert raw.ask(HANDSHAKE_V2)["status"] == "ok"
        for line, error in DECLARED:
            assert raw.ask(line) == {"type": "error", "error": error}
        assert raw.ask('{"type":"ping"}')["type"] == "pong"


def v1_register(entries: list[tuple[int, int]], first: int = 0) -> str:
    """A register_request line: (scheduled_at, expires_at) per entry, Unix seconds."""
    return json.dumps(
        {
            "type": "register_request",
            "requests": [
                {
                    "id": f"api-{at}-{first + i}",
                    "resource_id": "api",
                    "scheduled_at": at,
                    "expires_at": expires,
                }
                for i, (at, expires) in enumerate(entries)
            ],
        },
        separators=(",", ":"),
    )


def v1_schedule(
    request_time: int, offsets_ms: list[int], limit: int, window_ms: int = 3_600_000
) -> str:
    return json.dumps(
        {
            "type": "schedule_request",
            "resource_id": "api",
            "rate_limit": limit,
            "window_ms": window_ms,
            "request_time": request_time,
            "retry_offsets": offsets_ms,
        },
        separators=(",", ":"),
    )


def test_v1_plans_and_registrations_past_their_caps_are_refused_by_name() -> None:
    """The reported pair (10,000 registrations, then a plan of 10,000 attempts: two lines
    under 1 MiB) once stalled every client for 10s and then killed the daemon."""
    now = int(time.time())
    with running() as daemon, daemon.raw() as raw:
        assert raw.ask(HANDSHAKE_V1)["status"] == "ok"
        before = daemon.rss_kib()
        raw.send(v1_register([(now + i, now + 3600) for i in range(10_000)]) + "\n")
        raw.send(v1_schedule(now, [i * 360 for i in range(10_000)], 10_000) + "\n")
        assert ping_time(daemon) < 1.0
        assert replies(raw, 2) == [
            {
                "type": "error",
                "error": "invalid register request format: requests: 10000 entries, more than"
                " 1000 (send at most 1000 in one request)",
            },
            {
                "type": "error",
                "error": "invalid schedule request format: retry_offsets: 10000 entries, more"
                " than 1000 (send at most 1000 in one request)",
            },
        ]
        assert daemon.rss_kib() - before < 20 * MIB


def test_v1_plans_and_registrations_at_their_caps_are_decided_fast() -> None:
    """Registrations laid out so that a plan at the cap (1,000 attempts, 1 per 1000s) meets a
    different one at every shift for a long way: 5,000 registered times 1900·1000s apart,
    planned ones 1900s apart. The daemon once listed every (planned, registered) pair: 5·10^6
    intervals, seconds of stall and half a gigabyte. Now it answers at once, stays small and
    serves others meanwhile."""
    now = int(time.time())
    cap = protocol.MAX_REGISTER_ENTRIES
    registered = [now + 1_900_000 * j for j in range(5 * cap)]
    with running() as daemon, daemon.raw() as registrar, daemon.raw() as planner:
        assert registrar.ask(HANDSHAKE_V1)["status"] == "ok"
        assert planner.ask(HANDSHAKE_V1)["status"] == "ok"
        before = daemon.rss_kib()
        for first in range(0, len(registered), cap):
            entries = [(at, at + 1000) for at in registered[first : first + cap]]
            assert registrar.ask(v1_register(entries, first))["success"] is True
        offsets = [i * 1_900_000 for i in range(protocol.MAX_RETRY_OFFSETS)]
        started = time.monotonic()
        planner.send(v1_schedule(now, offsets, 1, window_ms=1_000_000) + "\n")
        waited = ping_time(daemon)
        [answer] = replies(planner, 1)
        took = time.monotonic() - started
        grown = daemon.rss_kib() - before
        print(f"plan of 1000 beside 5000 registered: {took:.3f}s, ping {waited:.3f}s, +{grown} KiB")
        assert answer["type"] == "schedule_response", answer
        assert answer["can_schedule"] is False
        assert took < 2.0
        assert waited < 1.0
        assert grown < 20 * MIB


NESTED = [
    b"[" * 100_000 + b"]" * 100_000,
    b'{"type":"ping","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    b"[" * 5000,
]


def test_deeply_nested_json_gets_a_clean_error_and_no_traceback() -> None:
    """Once "internal error" and a logged traceback, every time."""
    with running() as daemon, daemon.raw() as raw:
        for line in NESTED * 3:
            assert raw.ask(line) == {
                "type": "error",
                "error": f"invalid JSON: nested deeper than {protocol.MAX_DEPTH} levels",
            }
        assert raw.ask('{"type":"ping"}')["type"] == "pong"
        assert "Traceback" not in daemon.log_text()
        assert "internal error" not in daemon.log_text()


def test_nesting_within_the_bound_is_read() -> None:
    depth = protocol.MAX_DEPTH - 1
    line = b'{"type":"schedule_request","x":' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(protocol.ProtocolError, match="invalid schedule request format"):
        protocol.decode(line)  # read to the end: only the missing fields are wrong


def test_an_internal_error_is_logged_once_a_minute_per_kind(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug a client can trigger again and again must not flood the log: one traceback per
    distinct error a minute, then a count of those not logged."""
    coordinator = Coordinator({}, "diophantine", 60.0)
    handlers = Handlers(coordinator, None, flush_usage=lambda: None, wake=lambda: None)
    clock = [0.0]
    handlers.log_throttle = LogThrottle(
        logging.getLogger("patience.daemon"), clock=lambda: clock[0]
    )
    failures = iter(["first bug"] * 5 + ["first bug", "second bug"])

    def broken(session: object, message: object) -> bytes:
        raise RuntimeError(next(failures))

    handlers.table[protocol.Ping] = broken
    with caplog.at_level(logging.ERROR, logger="patience.daemon"):
        for _ in range(5):
            reply = handlers.handle(Session(), b'{"type":"ping"}')
            assert json.loads(reply) == {  # type: ignore[arg-type]
                "type": "error",
                "error": "internal error (see the daemon's log)",
            }
        clock[0] = 61.0
        handlers.handle(Session(), b'{"type":"ping"}')
        handlers.handle(Session(), b'{"type":"ping"}')
    logged = [(r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert logged == [
        ('internal error on request b\'{"type":"ping"}\'', True),
        (
            'internal error on request b\'{"type":"ping"}\' (4 more like it in the last 60s'
            " not logged)",
            True,
        ),
        ('internal error on request b\'{"type":"ping"}\'', True),
    ]
    assert [str(r.exc_info[1]) for r in caplog.records if r.exc_info] == [
        "first bug",
        "first bug",
        "second bug",
    ]
