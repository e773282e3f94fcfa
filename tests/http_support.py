"""Helpers for the HTTP tests: a real daemon serving HTTP on a free loopback port (the port is
read from its log), requests with exactly the headers a test wants, and real rpr and patience
runs against the daemon."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import subprocess
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from daemon_support import Daemon
from integration_support import World, world

URL_IN_LOG = re.compile(r"dashboard on (http://\S+/)")
# A resource named as markup, the payload that ran in the Go dashboard. Resource ids hold no
# whitespace, so its attributes are parted by "/", which HTML reads as a separator: as markup
# this is an image with an empty source whose error handler runs.
XSS = "<img/src/onerror=alert(1)>"


class Reply:
    def __init__(self, status: int, headers: Mapping[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode()


class HttpDaemon:
    """A started daemon with `--http`, its URL, and the world its clients run in."""

    def __init__(self, w: World, daemon: Daemon, token: str | None) -> None:
        self.world = w
        self.daemon = daemon
        self.token = token
        self.url = wait_for_url(daemon)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "", parts.port or 80

    def get(
        self,
        path: str,
        headers: Mapping[str, str] | None = None,
        method: str = "GET",
        auth: bool = True,
    ) -> Reply:
        """One request on a fresh connection; the token is sent unless `auth` is False."""
        sent = {"Host": f"{self.host}:{self.port}"}
        if self.token and auth:
            sent["Authorization"] = f"Bearer {self.token}"
        sent.update(headers or {})
        connection = http.client.HTTPConnection(self.host, self.port, timeout=10)
        try:
            connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            for name, value in sent.items():
                connection.putheader(name, value)
            connection.endheaders()
            response = connection.getresponse()
            return Reply(response.status, dict(response.getheaders()), response.read())
        finally:
            connection.close()

    def json(self, path: str) -> Any:
        reply = self.get(path)
        assert reply.status == 200, (path, reply.status, reply.body)
        return reply.json()

    def rpr(self, resource: str, *args: str) -> subprocess.CompletedProcess[str]:
        """`rpr ARGS` coordinated through the daemon under `resource`."""
        head, _, command = _split(args)
        return self.world.rpr(*head, *self.world.daemon_flags(resource), "--", *command)

    def patience(self, resource: str, *args: str) -> subprocess.CompletedProcess[str]:
        head, _, command = _split(args)
        return self.world.patience(*head, *self.world.daemon_flags(resource), "--", *command)


def _split(args: tuple[str, ...]) -> tuple[list[str], str, list[str]]:
    at = args.index("--")
    return list(args[:at]), "--", list(args[at + 1 :])


def samples(d: HttpDaemon) -> dict[str, list[Sample]]:
    """/metrics read with Prometheus's own parser: the samples by name."""
    reply = d.get("/metrics")
    assert reply.status == 200, reply.body
    assert reply.headers["Content-Type"].startswith("text/plain")
    by_name: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            by_name.setdefault(sample.name, []).append(sample)
    return by_name


def value(found: dict[str, list[Sample]], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    matching = [s.value for s in found.get(name, []) if labels.items() <= s.labels.items()]
    return sum(matching)


def resource_path(resource_id: str) -> str:
    return "/api/v1/resources/" + quote(resource_id, safe="")


def wait_for_url(daemon: Daemon, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = URL_IN_LOG.search(daemon.log_text())
        if found:
            return found.group(1)
        time.sleep(0.02)
    raise AssertionError(f"no HTTP URL in the daemon's log:\n{daemon.log_text()}")


@contextlib.contextmanager
def http_daemon(
    tmp_path: Path,
    daemon_keys: str = "",
    config: str = "",
    listen: str = "127.0.0.1:0",
    token: str | None = None,
) -> Iterator[HttpDaemon]:
    """A daemon with `--http LISTEN` in a world of its own; `daemon_keys` go in its `[daemon]`
    table (with `http_token` when `token` is given), `config` after it."""
    if token is not None:
        daemon_keys += f'\nhttp_token = "{token}"'
    with world(tmp_path) as w:
        daemon = w.daemon(f"[daemon]\n{daemon_keys}\n{config}")
        daemon.args = ("--http", listen)
        daemon.start()
        try:
            yield HttpDaemon(w, daemon, token)
        finally:
            daemon.ensure_stopped()
