"""Alerts on the HTTP side through a real daemon (docs/http-api.md, docs/alerting.md): limits
used up fire `exhaustion` within seconds (short `exhaustion_for` and `min_hold`); the alerts
are then in /api/v1/alerts as the socket's `alerts` query has them, and in /metrics (read by
Prometheus's own parser) as patience_alerts_firing, folded under the label cap like the other
resource labels; a failing command notifier is counted; a resolved alert leaves the firing
ones and shows with ?all=1."""

from __future__ import annotations

from pathlib import Path

from alert_support import alerts, wait_for
from http_support import HttpDaemon, http_daemon, samples, value

# api:brief's window is short, so its alert resolves within the test; the others stay firing.
CONFIG = """
[rate_limiting.resources]
"api:held" = { limit = 2, window = "1h" }
"api:brief" = { limit = 2, window = "6s" }
"api:third" = { limit = 2, window = "1h" }

[alerting]
exhaustion_for = "1s"
min_hold = "1s"
command = ["false"]
"""


def statuses(d: HttpDaemon, query: str = "") -> dict[str, str]:
    """Resource -> status of its exhaustion alert, from /api/v1/alerts."""
    reply = d.json("/api/v1/alerts" + query)
    assert reply["type"] == "alerts_response"
    return {a["resource"]: a["status"] for a in reply["alerts"] if a["rule"] == "exhaustion"}


def use_up(d: HttpDaemon, *resources: str) -> None:
    with d.daemon.client(tool="patience") as client:
        for resource in resources:
            assert all(client.acquire(resource).granted for _ in range(2))


def test_alerts_in_the_api_and_in_metrics(tmp_path: Path) -> None:
    with http_daemon(tmp_path, daemon_keys="http_max_resources = 2", config=CONFIG) as d:
        assert statuses(d) == {}
        assert "patience_alerts_firing" not in samples(d)  # no sample while nothing fires
        use_up(d, "api:held", "api:brief", "api:third")
        every = {"api:held": "firing", "api:brief": "firing", "api:third": "firing"}
        wait_for(lambda: statuses(d) == every, 10, "three exhaustion alerts firing")

        # The same objects as the socket's alerts query.
        got = d.json("/api/v1/alerts")
        socket = alerts(d.daemon)
        assert got["alerts"] == socket["alerts"]
        (alert,) = [a for a in got["alerts"] if a["resource"] == "api:held"]
        assert alert["tools"] == ["patience"] and alert["ends_at"] is None
        assert "100% of its limit (2 per 1h) in use" in alert["summary"]
        assert [n["notifier"] for n in got["notifiers"]] == ["command"]

        # /metrics: the first two resources seen keep their names, the third is "other".
        found = samples(d)
        firing = {
            (s.labels["rule"], s.labels["resource"]): s.value
            for s in found["patience_alerts_firing"]
        }
        assert firing == {
            ("exhaustion", "api:held"): 1,
            ("exhaustion", "api:brief"): 1,
            ("exhaustion", "other"): 1,
        }
        wait_for(
            lambda: value(samples(d), "patience_alert_notification_failures_total") >= 1,
            10,
            "the failing command counted",
        )
        found = samples(d)
        command = {"notifier": "command"}
        assert value(found, "patience_alert_notifications_sent_total", **command) == 0
        assert value(found, "patience_alert_notifications_dropped_total", **command) == 0
        assert value(found, "patience_alert_notifications_queued", **command) >= 1
        assert d.json("/api/v1/alerts")["notifiers"][0]["failures"] >= 1

        # api:brief's window passes: its alert resolves, leaves the firing ones and the gauge.
        wait_for(lambda: "api:brief" not in statuses(d), 15, "api:brief resolved")
        assert statuses(d) == {"api:held": "firing", "api:third": "firing"}
        assert statuses(d, "?all=1") == {**statuses(d), "api:brief": "resolved"}
        assert statuses(d, "?all=true") == statuses(d, "?all=1")
        assert statuses(d, "?all=0") == statuses(d)
        (resolved,) = [a for a in d.json("/api/v1/alerts?all=1")["alerts"] if a["ends_at"]]
        assert resolved["ends_at"] > resolved["starts_at"]
        assert d.json("/api/v1/alerts?all=1")["alerts"] == alerts(d.daemon, True)["alerts"]
        firing_now = {s.labels["resource"] for s in samples(d)["patience_alerts_firing"]}
        assert firing_now == {"api:held", "other"}


def test_bad_alerts_requests_are_named(tmp_path: Path) -> None:
    with http_daemon(tmp_path) as d:
        cases = {
            "/api/v1/alerts?all=maybe": "all: expected true or false, got 'maybe'",
            "/api/v1/alerts?resolved=1": "unknown parameter 'resolved' (known: all)",
            "/api/v1/alerts?all=1&all=0": "parameter 'all' given twice",
        }
        for path, words in cases.items():
            reply = d.get(path)
            assert reply.status == 400, (path, reply.status, reply.body)
            assert words in reply.json()["error"], (path, reply.body)
        assert d.json("/api/v1/alerts") == {
            "type": "alerts_response",
            "alerts": [],
            "notifiers": [],
        }
