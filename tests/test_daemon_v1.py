"""Protocol 1.0: the exact lines the Go `patience diophantine --daemon` sends, replayed against a
real daemon process, with the replies it expects and real scheduling decisions."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime

import pytest

from daemon_support import Daemon, Raw, running

GO_HANDSHAKE = '{"client":"patience-cli","type":"handshake","version":"1.0"}'
GO_PROBE = (
    '{"rate_limit":1,"request_time":-62135596800,"resource_id":"test-connection",'
    '"retry_offsets":[],"type":"schedule_request","window_ms":1000}'
)
GO_SCHEDULE = (
    '{"rate_limit":100,"request_time":1735732800,"resource_id":"shared-api",'
    '"retry_offsets":[0,600000,1800000],"type":"schedule_request","window_ms":3600000}'
)
GO_REGISTER = (
    '{"requests":[{"expires_at":1735736400,"id":"shared-api-1735732800-0",'
    '"resource_id":"shared-api","scheduled_at":1735732800}],"type":"register_request"}'
)


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running() as d:
        yield d


def go_connection(daemon: Daemon) -> Raw:
    """What the Go client does on connect: the handshake, checked as it checks it."""
    raw = daemon.raw()
    assert raw.ask(GO_HANDSHAKE)["status"] == "ok"
    return raw


def schedule(raw: Raw, resource: str, limit: int, window_ms: int, at: int, offsets: list[int]):
    # Built the way Go marshals a map: keys sorted.
    line = json.dumps(
        {
            "rate_limit": limit,
            "request_time": at,
            "resource_id": resource,
            "retry_offsets": offsets,
            "type": "schedule_request",
            "window_ms": window_ms,
        },
        separators=(",", ":"),
        sort_keys=True,
    )
    return raw.ask(line)


def register(raw: Raw, resource: str, times: list[int], expires: int) -> dict[str, object]:
    requests = [
        {
            "expires_at": expires,
            "id": f"{resource}-{t}-{i}",
            "resource_id": resource,
            "scheduled_at": t,
        }
        for i, t in enumerate(times)
    ]
    line = json.dumps({"requests": requests, "type": "register_request"}, separators=(",", ":"))
    return raw.ask(line)


def parse_rfc3339(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_handshake_reply_is_exactly_what_go_expects(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        reply = raw.ask(GO_HANDSHAKE)
    assert reply == {
        "message": "handshake successful",
        "status": "ok",
        "type": "handshake_response",
    }


def test_go_probe_with_zero_time_gets_a_well_formed_yes(daemon: Daemon) -> None:
    with go_connection(daemon) as raw:
        reply = raw.ask(GO_PROBE)
    assert reply["type"] == "schedule_response"
    assert reply["status"] == "ok"
    assert reply["can_schedule"] is True
    assert isinstance(reply["reason"], str)
    assert reply["scheduled_at"] == "0001-01-01T00:00:00Z"


def test_full_go_session_on_one_connection(daemon: Daemon) -> None:
    """Handshake, probe, the CLI's real schedule form, its register form: all answered, in order."""
    sent = time.time()
    with daemon.raw() as raw:
        raw.send("\n".join([GO_HANDSHAKE, GO_PROBE, GO_SCHEDULE, GO_REGISTER]) + "\n")
        replies = [json.loads(raw.line()) for _ in range(4)]
    assert [r["type"] for r in replies] == [
        "handshake_response",
        "schedule_response",
        "schedule_response",
        "register_response",
    ]
    assert replies[2]["can_schedule"] is True
    # Booked from the daemon's receive time, which is later than the 2025 request time.
    assert parse_rfc3339(str(replies[2]["scheduled_at"])) >= sent - 0.001
    assert replies[3] == {
        "message": "requests registered successfully",
        "status": "ok",
        "success": True,
        "type": "register_response",
    }


def test_keys_in_any_order_are_accepted(daemon: Daemon) -> None:
    line = (
        '{"type":"schedule_request","window_ms":1000,"retry_offsets":[0],'
        '"resource_id":"order","request_time":1735732800,"rate_limit":1}'
    )
    with go_connection(daemon) as raw:
        assert raw.ask(line)["can_schedule"] is True


def test_registered_requests_make_later_plans_wait_exactly_long_enough(daemon: Daemon) -> None:
    t0 = int(time.time()) + 1000
    with go_connection(daemon) as raw:
        assert schedule(raw, "v1-decide", 2, 60_000, t0, [0, 1000])["can_schedule"] is True
        # The register that follows the yes confirms its booking; it is not counted twice.
        assert register(raw, "v1-decide", [t0, t0 + 1], t0 + 60)["success"] is True
    with go_connection(daemon) as raw:
        refused = schedule(raw, "v1-decide", 2, 60_000, t0 + 5, [0])
    assert refused["can_schedule"] is False
    assert refused["status"] == "ok"
    # The window [t0, t0 + 60) is full: the earliest fit is t0 + 60, and it is booked there.
    assert parse_rfc3339(str(refused["wait_until"])) == t0 + 60
    assert str(refused["wait_until"]).endswith("Z")
    assert "v1-decide" in str(refused["reason"])
    # The next refused client gets the next slot: [t0 + 1, t0 + 61) holds t0 + 1 and t0 + 60.
    with go_connection(daemon) as raw:
        assert (
            parse_rfc3339(str(schedule(raw, "v1-decide", 2, 60_000, t0 + 5, [0])["wait_until"]))
            == t0 + 61
        )


def test_a_plan_that_straddles_registrations_is_shifted_past_them(daemon: Daemon) -> None:
    t0 = int(time.time()) + 1000
    with go_connection(daemon) as raw:
        register(raw, "v1-shift", [t0 + 10, t0 + 20, t0 + 30], t0 + 200)
    with go_connection(daemon) as raw:
        # 3 per 100 s: a plan at t0 with retries at +0 and +50 s collides with all three.
        refused = schedule(raw, "v1-shift", 3, 100_000, t0, [0, 50_000])
    assert refused["can_schedule"] is False
    # [t0+10, t0+110) holds the three registrations: the first attempt must reach t0+110.
    assert parse_rfc3339(str(refused["wait_until"])) == t0 + 110
    # The plan is booked at t0+110 and t0+160: another plan of two fits only from t0+160
    # (from any earlier start, [t0+110, t0+210) would hold four).
    with go_connection(daemon) as raw:
        third = schedule(raw, "v1-shift", 3, 100_000, t0, [0, 50_000])
    assert parse_rfc3339(str(third["wait_until"])) == t0 + 160


def test_registrations_stop_counting_once_expired(daemon: Daemon) -> None:
    now = int(time.time())
    t0 = now + 1000
    with go_connection(daemon) as raw:
        register(raw, "v1-expired", [t0], now - 1)  # already expired: ignored
        assert schedule(raw, "v1-expired", 1, 60_000, t0, [0])["can_schedule"] is True
        register(raw, "v1-expiring", [t0], now + 2)
        assert schedule(raw, "v1-expiring", 1, 60_000, t0, [0])["can_schedule"] is False
        time.sleep(3.1)
        assert schedule(raw, "v1-expiring", 1, 60_000, t0, [0])["can_schedule"] is True


def test_other_resources_do_not_interfere(daemon: Daemon) -> None:
    t0 = int(time.time()) + 1000
    with go_connection(daemon) as raw:
        register(raw, "v1-a", [t0], t0 + 60)
        assert schedule(raw, "v1-b", 1, 60_000, t0, [0])["can_schedule"] is True


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"client":"x","type":"handshake","version":"3.0"}', "unsupported protocol version: 3.0"),
        ("{not json", "invalid JSON"),
        ('{"type":"launch_rockets"}', 'unknown message type: "launch_rockets"'),
    ],
)
def test_go_error_replies(daemon: Daemon, line: str, error: str) -> None:
    with daemon.raw() as raw:
        assert raw.ask(line) == {"error": error, "type": "error"}
        # The connection stays open after an error.
        assert raw.ask(GO_HANDSHAKE)["status"] == "ok"


@pytest.mark.parametrize(
    ("line", "prefix", "field"),
    [
        (
            '{"rate_limit":"100","request_time":1,"resource_id":"r","retry_offsets":[],'
            '"type":"schedule_request","window_ms":1000}',
            "invalid schedule request format",
            "$.rate_limit",
        ),
        (
            '{"rate_limit":1,"request_time":1,"resource_id":"r","retry_offsets":[0,"x"],'
            '"type":"schedule_request","window_ms":1000}',
            "invalid schedule request format",
            "$.retry_offsets[1]",
        ),
        (
            '{"rate_limit":0,"request_time":1,"resource_id":"r","retry_offsets":[],'
            '"type":"schedule_request","window_ms":1000}',
            "invalid schedule request format",
            "$.rate_limit",
        ),
        (
            '{"requests":[{"expires_at":"soon","id":"a","resource_id":"r","scheduled_at":1}],'
            '"type":"register_request"}',
            "invalid register request format",
            "$.requests[0].expires_at",
        ),
        ('{"type":"register_request"}', "invalid register request format", "requests"),
    ],
)
def test_malformed_go_requests_name_the_field(
    daemon: Daemon, line: str, prefix: str, field: str
) -> None:
    with go_connection(daemon) as raw:
        reply = raw.ask(line)
        assert reply["type"] == "error"
        assert str(reply["error"]).startswith(prefix)
        assert field in str(reply["error"])
        assert raw.ask(GO_PROBE)["can_schedule"] is True


def test_plan_that_can_never_fit_is_refused_with_the_time_its_first_attempt_fits(
    daemon: Daemon,
) -> None:
    """The Go default offsets under 2 per hour: not an error (the Go client would wait a silent
    minute and then run anyway) but a refusal saying when its first attempt fits, and why."""
    offsets = [0, 600_000, 1_800_000]
    before = time.time()
    with go_connection(daemon) as raw:
        first = schedule(raw, "v1-never", 2, 3_600_000, int(before), offsets)
        second = schedule(raw, "v1-never", 2, 3_600_000, int(before), offsets)
        third = schedule(raw, "v1-never", 2, 3_600_000, int(before), offsets)
    assert first["type"] == "schedule_response"
    assert first["can_schedule"] is False
    assert "can never fit" in str(first["reason"])
    assert parse_rfc3339(str(first["wait_until"])) == pytest.approx(before, abs=1.0)
    assert parse_rfc3339(str(second["wait_until"])) == pytest.approx(before, abs=1.0)
    # Two first attempts fill the hour: the third is booked an hour after the first.
    assert parse_rfc3339(str(third["wait_until"])) == pytest.approx(
        parse_rfc3339(str(first["wait_until"])) + 3600, abs=0.002
    )
    assert "can never fit the limit of v1-never" in daemon.log_text()


def test_go_metrics_ingestion_one_object_then_eof(daemon: Daemon) -> None:
    """The Go tool writes one RunMetrics object without newline and closes; the attempts are
    stored under its derived resource id and answer the 2.0 queries."""
    payload = {
        "command": "sh -c exit 1",
        "command_hash": "1a2b3c4d",
        "final_status": "failed",
        "total_duration_seconds": 1.0062,
        "total_attempts": 2,
        "successful_attempts": 0,
        "failed_attempts": 2,
        "attempts": [
            {"duration_seconds": 0.0031, "exit_code": 1, "success": False},
            {"duration_seconds": 0.0045, "exit_code": 1, "success": False},
        ],
        "timestamp": 1735732800,
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(daemon.socket)
        sock.sendall(json.dumps(payload).encode())
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert json.loads(reply) == {"type": "metrics_response", "accepted": 2}
    with daemon.client() as client:
        rows = client.query("resource_summary", resource_id="cmd-sh")
        tools = client.query("tool_comparison", resource_id="cmd-sh")
    assert len(rows) == 1
    assert rows[0]["total_executions"] == 2
    assert rows[0]["failed_runs"] == 2
    assert rows[0]["average_duration"] == pytest.approx(0.0038)
    assert tools[0]["tool"] == "patience"
