"""Protocol 2.0 against a real daemon: version negotiation, token acquisition with the daemon
doing the waiting, declared limits, schedules, state, health checks, pipelining, and the
synchronous client the tools use."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from daemon_support import Daemon, Raw, running
from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable
from patience.settings import Limit

CONFIG = """
[rate_limiting]
default_algorithm = "diophantine"

[rate_limiting.resources]
"api:external:*" = { limit = 3, window = "2s" }
"api:external:exact" = { limit = 2, window = "1s", algorithm = "gcra" }
"slow" = { limit = 1, window = "700ms" }
"""


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running(CONFIG) as d:
        yield d


def hello(raw: Raw, client_id: str, versions: list[str] | None = None) -> dict[str, object]:
    return raw.ask(
        json.dumps(
            {
                "type": "handshake",
                "versions": versions or ["2.0", "1.0"],
                "client_id": client_id,
                "tool": "repeater",
            }
        )
    )


def test_negotiation_picks_the_highest_common_version(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        assert hello(raw, "neg-1") == {
            "type": "handshake_response",
            "status": "ok",
            "message": "handshake successful",
            "version": "2.0",
            "server_version": "0.1.0",
            "client_id": "neg-1",
        }
        assert hello(raw, "neg-1", ["3.0", "2.0"])["version"] == "2.0"
        assert hello(raw, "neg-1", ["1.0"]) == {
            "type": "handshake_response",
            "status": "ok",
            "message": "handshake successful",
        }
        assert raw.ask('{"type":"handshake","versions":["3.0"]}') == {
            "type": "error",
            "error": "unsupported protocol version: 3.0",
        }


def test_acquire_reports_the_limit_in_force(daemon: Daemon) -> None:
    with daemon.client("repeater", "acq-1") as client:
        first = client.acquire("api:external:one")
        assert first.granted
        assert first.limit == Limit(3, 2.0, "diophantine")
        assert first.limit_source == "config:api:external:*"
        assert first.remaining == 2 and first.reset_after == pytest.approx(2.0, abs=0.1)
        assert client.acquire("api:external:one", tokens=2).remaining == 0
        refused = client.acquire("api:external:one")
        assert not refused.granted and refused.reason == "rate limit reached"
        assert 1.5 < refused.retry_after <= 2.0
        exact = client.acquire("api:external:exact")
        assert (exact.limit, exact.limit_source) == (
            Limit(2, 1.0, "gcra"),
            "config:api:external:exact",
        )


def test_unlimited_resources_say_so(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        hello(raw, "free-1")
        reply = raw.ask('{"type":"acquire","resource_id":"free:thing","tokens":50}')
    assert reply == {
        "type": "acquire_response",
        "granted": True,
        "tokens": 50,
        "retry_after": 0.0,
        "reset_after": 0.0,
    }


def test_the_daemon_does_the_waiting(daemon: Daemon) -> None:
    with daemon.client("patience", "wait-1") as client:
        assert client.acquire("slow").granted
        started = time.monotonic()
        grant = client.acquire("slow", max_wait=5.0)
        waited = time.monotonic() - started
        assert grant.granted
        assert 0.5 <= waited <= 3.0
        assert grant.waited == pytest.approx(waited, abs=0.2)
        # A wait that cannot be met is refused at once, with the time to retry.
        started = time.monotonic()
        refused = client.acquire("slow", max_wait=0.1)
        assert time.monotonic() - started < 0.5
        assert not refused.granted and 0.3 < refused.retry_after <= 0.7


def test_declared_limits_strictest_holds_across_clients(daemon: Daemon) -> None:
    with daemon.client("repeater", "decl-a") as a, daemon.client("patience", "decl-b") as b:
        loose = a.acquire("declared", limit=Limit(100, 60.0))
        assert (loose.limit, loose.limit_source) == (Limit(100, 60.0), "client:decl-a")
        strict = b.acquire("declared", limit=Limit(2, 60.0))
        assert (strict.limit, strict.limit_source, strict.remaining) == (
            Limit(2, 60.0),
            "client:decl-b",
            0,
        )
        refused = a.acquire("declared", limit=Limit(100, 60.0))
        assert not refused.granted and refused.limit_source == "client:decl-b"


def test_configuration_beats_a_declared_limit(daemon: Daemon) -> None:
    with daemon.client("repeater", "decl-c") as client:
        grant = client.acquire("api:external:declared", limit=Limit(1000, 1.0))
        assert (grant.limit.count, grant.limit_source) == (3, "config:api:external:*")


def test_schedules_and_resource_state(daemon: Daemon) -> None:
    with daemon.client("repeater", "rpr-42") as client:
        client.register_schedule(
            "api:external:state", {"type": "interval", "interval": 30.0, "coordination": True}
        )
        client.acquire("api:external:state")
        client.send_metrics(
            [
                {
                    "tool": "repeater",
                    "resource_id": "api:external:state",
                    "start_time": time.time(),
                    "duration": 0.2,
                    "success": True,
                    "execution_number": 1,
                }
            ]
        )
        [state] = client.resource_state("api:external:state")
        everything = client.resource_state()
    assert state["id"] == "api:external:state" and state["type"] == "api"
    assert state["rate_limit"] == {
        "limit": 3,
        "window": 2.0,
        "algorithm": "diophantine",
        "source": "config:api:external:*",
        "remaining": 2,
        "waiting": 0,
        "booked": 0,
        "learned": None,
    }
    me = state["active_clients"]["rpr-42"]  # type: ignore[index]
    assert me["tool"] == "repeater" and me["connected"] is True
    assert me["execution_count"] == 1 and me["rate_limit_tokens"] == 1
    assert me["schedule"] == {
        "type": "interval",
        "interval": 30.0,
        "count": None,
        "duration": None,
        "coordination": True,
    }
    assert state["clients_by_tool"] == {"repeater": 1}
    assert state["total_executions"] == 1 and state["tokens_granted"] == 1
    assert abs(float(state["last_activity"]) - time.time()) < 10  # type: ignore[arg-type]
    assert "api:external:state" in [r["id"] for r in everything]


def test_ping_and_status(daemon: Daemon) -> None:
    with daemon.client() as client:
        pong = client.ping()
        status = client.status()
    assert pong["type"] == "pong" and abs(float(pong["time"]) - time.time()) < 5  # type: ignore[arg-type]
    assert status["pid"] == daemon.proc.pid  # type: ignore[union-attr]
    assert status["version"] == "0.1.0" and status["protocol_versions"] == ["2.0", "1.0"]
    assert status["socket"] == daemon.socket and status["metrics_enabled"] is True
    assert float(status["uptime"]) > 0  # type: ignore[arg-type]
    assert status["connections"] >= 1 and status["clients"] >= 1  # type: ignore[operator]


def test_pipelined_requests_are_answered_in_order(daemon: Daemon) -> None:
    with daemon.raw() as hold:
        hello(hold, "pipe-holder")
        assert hold.ask('{"type":"acquire","resource_id":"slow","max_wait":5}')["granted"]
        with daemon.raw() as raw:
            raw.send(
                '{"type":"handshake","versions":["2.0"],"client_id":"pipe","tool":"patience"}\n'
                '{"type":"acquire","resource_id":"slow","max_wait":5}\n'
                '{"type":"ping"}\n'
                "garbage\n"
                '{"type":"status"}\n'
            )
            types = [json.loads(raw.line())["type"] for _ in range(5)]
    assert types == ["handshake_response", "acquire_response", "pong", "error", "status_response"]


def test_a_client_without_handshake_is_served_anonymously(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        assert raw.ask('{"type":"acquire","resource_id":"anon"}')["granted"] is True


def test_client_errors_and_reconnection() -> None:
    with running() as daemon:
        client = DaemonClient(daemon.socket, "repeater", "reconnect", timeout=5.0)
        assert client.acquire("r").granted
        with pytest.raises(DaemonError, match="tokens"):
            client.request({"type": "acquire", "resource_id": "r", "tokens": "many"})
        daemon.stop()
        with pytest.raises(DaemonUnavailable, match="cannot connect"):
            client.acquire("r")
        daemon.start()
        assert client.acquire("r").granted  # a new connection, transparently
        client.close()
    with pytest.raises(DaemonUnavailable, match="cannot connect"):
        DaemonClient(daemon.socket, "repeater").ping()


def test_the_client_imports_nothing_heavy() -> None:
    code = (
        "import sys; import patience.daemon.client; "
        "print(sorted(m for m in ('asyncio', 'msgspec', 'sqlite3', 'subprocess', 'typing') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
