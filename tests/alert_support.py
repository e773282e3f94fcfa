"""Helpers for the alert tests: a real local webhook receiver (an HTTP server on a thread that
keeps every body POSTed to it, and can answer slowly or with an error), the checks of
Alertmanager's webhook format (version 4), and a daemon that starts with synthetic throttle
events (the `feedback` message that will report them does not exist yet)."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from daemon_support import PYTHON, Daemon

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


class Receiver:
    """An HTTP server on 127.0.0.1: `bodies` holds each JSON body POSTed, in order. `delay`
    (seconds) holds each answer back; `status` is the answer's code."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self.delay = 0.0
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                time.sleep(receiver.delay)
                receiver.paths.append(self.path)
                receiver.headers.append(dict(self.headers.items()))
                receiver.bodies.append(body)
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def statuses(self, rule: str) -> list[str]:
        """The statuses POSTed for alerts of `rule`, in order."""
        return [b["status"] for b in self.bodies if b["alerts"][0]["labels"]["rule"] == rule]


@contextlib.contextmanager
def receiver(port: int = 0) -> Iterator[Receiver]:
    server = Receiver(port)
    try:
        yield server
    finally:
        server.close()


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def check_alertmanager(body: dict[str, Any]) -> None:
    """The fields and types of Alertmanager's webhook message, version 4
    (prometheus.io/docs/alerting/latest/configuration/#webhook_config)."""
    strings = ("version", "groupKey", "status", "receiver", "externalURL")
    for key in strings:
        assert isinstance(body.get(key), str), (key, body)
    assert body["version"] == "4"
    assert body["status"] in ("firing", "resolved")
    assert isinstance(body.get("truncatedAlerts", 0), int)
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        assert isinstance(body.get(key), dict), (key, body)
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in body[key].items())
    alerts = body.get("alerts")
    assert isinstance(alerts, list) and alerts
    for alert in alerts:
        assert alert["status"] in ("firing", "resolved")
        for key in ("labels", "annotations"):
            assert isinstance(alert[key], dict)
            assert all(isinstance(k, str) and isinstance(v, str) for k, v in alert[key].items())
        assert isinstance(alert["labels"].get("alertname"), str)
        for key in ("startsAt", "endsAt"):
            assert RFC3339.match(alert[key]), (key, alert[key])
        assert isinstance(alert["generatorURL"], str)
        assert re.fullmatch(r"[0-9a-f]{16}", alert["fingerprint"])
        if alert["status"] == "firing":
            assert alert["endsAt"] == "0001-01-01T00:00:00Z"
        else:
            assert alert["endsAt"] >= alert["startsAt"]
    # Every label the alerts share is a common label.
    shared = set.intersection(*(set(a["labels"].items()) for a in alerts))
    assert set(body["commonLabels"].items()) <= shared


# The daemon's main(), after recording synthetic throttle events at its start: for each
# (resource, tool, client) of the JSON list in argv[1], one event per entry.
WITH_THROTTLES = """
import json, sys, time
from patience.daemon import cli
from patience.daemon.lifecycle import Daemon
events = json.loads(sys.argv[1])
prepare = Daemon.prepare
def prepared(self):
    prepare(self)
    for resource, tool, client in events:
        self.alerts.throttles.record(resource, tool, client, time.time())
Daemon.prepare = prepared
sys.exit(cli.main(sys.argv[2:]))
"""


class ThrottledDaemon(Daemon):
    """A real daemon that starts with the throttle events `events` (resource, tool, client)."""

    def __init__(self, directory: Path, config: str, events: list[tuple[str, str, str]]) -> None:
        super().__init__(directory, config)
        self.events = events

    def command(self) -> list[str]:
        flags = ["--socket", self.socket, "--config", str(self.config), *self.args]
        return [PYTHON, "-c", WITH_THROTTLES, json.dumps(self.events), *flags]


def alerts(daemon: Daemon, everything: bool = False) -> dict[str, Any]:
    with daemon.raw() as raw:
        return raw.ask(json.dumps({"type": "alerts", "all": everything}))
