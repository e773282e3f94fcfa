"""The HTTP side end to end: a real daemon with --http, real rpr and patience runs against it,
then /metrics read with Prometheus's own parser and the JSON endpoints compared with what the
socket answers."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import quote

from daemon_support import short_dir
from http_support import HttpDaemon, http_daemon, resource_path, samples, value
from integration_support import wait_for
from redis_support import redis_server

LIMITS = """
[rate_limiting.resources]
"api:test:*" = { limit = 100, window = "1m" }
"""


def make_runs(d: HttpDaemon) -> None:
    """3 rpr successes and 2 failed patience attempts on api:test:one, 2 rpr failures (exit
    3) on api:test:two/x."""
    assert d.rpr("api:test:one", "count", "--times", "3", "--", "true").returncode == 0
    r = d.patience(
        "api:test:one", "exponential", "--attempts", "2", "--base-delay", "10ms", "--", "false"
    )
    assert r.returncode == 1, r.stderr
    r = d.rpr("api:test:two/x", "count", "--times", "2", "--", "sh", "-c", "exit 3")
    assert r.returncode != 0


def test_metrics_count_the_runs_made(tmp_path: Path) -> None:
    with http_daemon(tmp_path, config=LIMITS) as d:
        started = time.time()
        make_runs(d)
        found = samples(d)
        executions = "patience_executions_total"
        assert (
            value(found, executions, tool="repeater", resource="api:test:one", outcome="success")
            == 3
        )
        assert (
            value(found, executions, tool="patience", resource="api:test:one", outcome="failure")
            == 2
        )
        assert (
            value(found, executions, tool="repeater", resource="api:test:two/x", outcome="failure")
            == 2
        )
        assert value(found, executions) == 7
        count = "patience_execution_duration_seconds_count"
        assert value(found, count, tool="repeater", resource="api:test:one") == 3
        assert value(found, count) == 7
        inf = [
            s
            for s in found["patience_execution_duration_seconds_bucket"]
            if s.labels["le"] == "+Inf"
        ]
        assert sum(s.value for s in inf) == 7
        assert value(found, "patience_execution_duration_seconds_sum") > 0

        # Tokens: one per rpr run and per patience attempt, as the socket counts them.
        state = d.json(resource_path("api:test:one"))["resources"][0]
        assert value(found, "patience_tokens_granted_total", resource="api:test:one") == 5
        assert state["tokens_granted"] == 5
        assert (
            value(found, "patience_tokens_granted_total", resource="api:test:one", tool="repeater")
            == 3
        )
        assert value(found, "patience_requests_refused_total") == 0
        assert value(found, "patience_resource_limit_tokens", resource="api:test:one") == 100
        assert value(found, "patience_resource_window_seconds", resource="api:test:one") == 60
        remaining = state["rate_limit"]["remaining"]
        assert (
            value(found, "patience_resource_remaining_tokens", resource="api:test:one") == remaining
        )
        assert (
            value(found, "patience_resource_utilisation_ratio", resource="api:test:one")
            == (100 - remaining) / 100
        )
        assert value(found, "patience_waiting_requests") == 0

        (info,) = found["patience_daemon_info"]
        assert info.labels["backend"] == "memory" and info.labels["version"]
        assert abs(value(found, "patience_daemon_start_time_seconds") - started) < 30
        assert value(found, "patience_daemon_backend_up", backend="memory") == 1
        assert value(found, "patience_daemon_resources") == 2
        assert {s.labels["tool"] for s in found["patience_active_clients"]} <= {
            "repeater",
            "patience",
        }


def test_refusals_and_waits_are_counted(tmp_path: Path) -> None:
    with http_daemon(
        tmp_path, config='[rate_limiting.resources]\n"tight" = { limit = 1, window = "1h" }\n'
    ) as d:
        with d.daemon.client() as client:
            assert client.acquire("tight").granted
            assert not client.acquire("tight").granted
            assert not client.acquire("tight", max_wait=0.2).granted
        found = samples(d)
        assert value(found, "patience_tokens_granted_total", resource="tight") == 1
        assert value(found, "patience_requests_refused_total", resource="tight") == 2
        assert value(found, "patience_resource_utilisation_ratio", resource="tight") == 1


def test_resource_labels_are_capped(tmp_path: Path) -> None:
    with http_daemon(tmp_path, daemon_keys="http_max_resources = 2") as d:
        for name in ("r1", "r2", "r3", "r4"):
            assert d.rpr(name, "count", "--times", "2", "--", "true").returncode == 0
        found = samples(d)
        labels = {s.labels["resource"] for s in found["patience_executions_total"]}
        assert labels == {"r1", "r2", "other"}
        assert value(found, "patience_executions_total", resource="other") == 4
        assert value(found, "patience_tokens_granted_total", resource="other") == 4
        assert {s.labels["resource"] for s in found["patience_waiting_requests"]} <= {
            "r1",
            "r2",
            "other",
        }


def test_json_endpoints_answer_what_the_socket_answers(tmp_path: Path) -> None:
    with http_daemon(tmp_path, config=LIMITS) as d:
        make_runs(d)
        with d.daemon.client() as client:
            status = client.status()
            states = client.resource_state()
            summary = client.query("resource_summary")
            tools = client.query("tool_comparison", tools=["repeater"])
            usage = client.query("rate_limit_usage", "api:test:one")
        got = d.json("/api/v1/status")
        assert got["type"] == "status_response"
        assert {k: v for k, v in got.items() if k not in ("uptime", "connections")} == {
            k: v for k, v in status.items() if k not in ("uptime", "connections")
        }
        resources = d.json("/api/v1/resources")["resources"]
        assert sorted(r["id"] for r in resources) == sorted(s["id"] for s in states)
        one = d.json(resource_path("api:test:two/x"))["resources"]
        assert [r["id"] for r in one] == ["api:test:two/x"]
        assert one[0]["tokens_granted"] == 2
        assert d.json("/api/v1/query/resource_summary")["results"] == summary
        assert d.json("/api/v1/query/tool_comparison?tools=repeater")["results"] == tools
        got_usage = d.json("/api/v1/query/rate_limit_usage?resource_id=api:test:one")["results"]
        assert got_usage == usage
        now = time.time()
        window = f"start={now - 3600}&end={now + 60}"
        assert d.json(f"/api/v1/query/resource_summary?{window}")["results"] == summary
        assert d.json(f"/api/v1/query/resource_summary?start={now + 600}")["results"] == []
        health = d.json("/healthz")
        assert health["status"] == "ok" and health["version"] == status["version"]


def test_bad_requests_get_clear_errors(tmp_path: Path) -> None:
    with http_daemon(tmp_path) as d:
        cases = {
            "/api/v1/query/everything": (404, "no query 'everything' (known: resource_summary"),
            "/api/v1/query/resource_summary?start=yesterday": (400, "start: expected Unix seconds"),
            "/api/v1/query/resource_summary?start=-5": (400, "start: expected Unix seconds"),
            "/api/v1/query/resource_summary?start=nan": (400, "start: expected Unix seconds"),
            "/api/v1/query/resource_summary?colour=red": (
                400,
                "unknown parameter 'colour' (known: resource_id",
            ),
            "/api/v1/query/resource_summary?start=1&start=2": (
                400,
                "parameter 'start' given twice",
            ),
            "/api/v1/query/resource_summary?start=20&end=10": (
                400,
                "time_range.end is before time_range.start",
            ),
            "/api/v1/status?verbose=1": (400, "unknown parameter 'verbose'"),
            resource_path("never:seen"): (404, "no resource 'never:seen' is tracked now"),
            "/api/v1/nothing": (404, "Not Found"),
            "/static/../../etc/passwd": (404, "Not Found"),
            "/static/" + quote("../server.py", safe=""): (404, "Not Found"),
        }
        for path, (status, words) in cases.items():
            reply = d.get(path)
            assert reply.status == status, (path, reply.status, reply.body)
            assert words in reply.json()["error"], (path, reply.body)


def test_the_redis_backend_state_is_exported(tmp_path: Path) -> None:
    """patience_daemon_backend_up{backend="redis"}: 1 while Redis answers, 0 while it is gone
    (the daemon then enforces its limits alone), 1 again when it is back."""
    with short_dir() as directory, redis_server(directory) as server:
        keys = f'backend = "redis"\nredis_url = "{server.url}"'
        with http_daemon(tmp_path, daemon_keys=keys, config=LIMITS) as d:
            found = samples(d)
            assert value(found, "patience_daemon_backend_up", backend="redis") == 1
            assert found["patience_daemon_info"][0].labels["backend"] == "redis"
            server.stop()
            wait_for(lambda: value(samples(d), "patience_daemon_backend_up", backend="redis") == 0)
            server.start()
            wait_for(lambda: value(samples(d), "patience_daemon_backend_up", backend="redis") == 1)
