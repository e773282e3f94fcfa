"""The HTTP side's protections against a real daemon: loopback by default, a token for anything
else, the Host check against DNS rebinding, read-only, the Content-Security-Policy on every
answer, and resource ids escaped as data."""

from __future__ import annotations

import re
import socket
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from daemon_support import run_daemon, short_dir
from http_support import XSS, http_daemon, resource_path

TOKEN = "0123456789abcdef0123456789abcdef"


def test_a_foreign_host_header_is_refused(tmp_path: Path) -> None:
    """A page on evil.example whose name now resolves to 127.0.0.1 still sends its own name."""
    with http_daemon(tmp_path) as d:
        for host in (f"evil.example:{d.port}", "localhost.evil.example", ""):
            reply = d.get("/api/v1/status", {"Host": host})
            assert reply.status == 403, host
            assert "Host header is not accepted" in reply.json()["error"]
            assert reply.headers["Content-Security-Policy"]
        for host in (f"localhost:{d.port}", f"127.0.0.1:{d.port}", "127.0.0.1"):
            assert d.get("/api/v1/status", {"Host": host}).status == 200, host


def test_a_listed_name_is_accepted(tmp_path: Path) -> None:
    with http_daemon(tmp_path, daemon_keys='http_hosts = "dash.internal, other.internal"') as d:
        assert d.get("/healthz", {"Host": f"dash.internal:{d.port}"}).status == 200
        assert d.get("/healthz", {"Host": "other.internal"}).status == 200
        assert d.get("/healthz", {"Host": "third.internal"}).status == 403


def test_nothing_changes_state(tmp_path: Path) -> None:
    with http_daemon(tmp_path) as d:
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            for path in ("/api/v1/status", "/metrics", "/", resource_path("x")):
                reply = d.get(path, method=method)
                assert reply.status == 405, (method, path)
                assert reply.headers["Allow"] == "GET, HEAD"
        assert d.get("/metrics", method="HEAD").status == 200


def test_the_token_guards_every_data_endpoint(tmp_path: Path) -> None:
    with http_daemon(tmp_path, token=TOKEN) as d:
        for path in (
            "/metrics",
            "/healthz",
            "/api/v1/status",
            "/api/v1/resources",
            "/api/v1/query/tool_comparison",
        ):
            missing = d.get(path, auth=False)
            assert missing.status == 401, path
            assert missing.headers["WWW-Authenticate"].startswith("Bearer")
            assert "Authorization: Bearer TOKEN" in missing.json()["error"]
            wrong = d.get(path, {"Authorization": "Bearer " + "f" * 32}, auth=False)
            assert wrong.status == 401, path
            assert d.get(path, {"Authorization": TOKEN}, auth=False).status == 401  # no scheme
            assert d.get(path).status == 200, path
        # The page, its script and style hold no data: a browser loads them, then the token.
        for path in ("/", "/static/dashboard.js", "/static/dashboard.css"):
            assert d.get(path, auth=False).status == 200, path


def test_a_non_loopback_address_needs_a_token(tmp_path: Path) -> None:
    with short_dir() as directory:
        r = run_daemon(directory, "--socket", str(directory / "d.sock"), "--http", "0.0.0.0:0")
    assert r.returncode == 2, r.stderr
    assert "0.0.0.0:0 is not a loopback address: set daemon.http_token" in r.stderr


def test_a_non_loopback_address_with_a_token_serves(tmp_path: Path) -> None:
    with http_daemon(tmp_path, listen="0.0.0.0:0", token=TOKEN) as d:
        assert d.url.startswith("http://0.0.0.0:")
        reply = d.get("/api/v1/status", {"Host": f"127.0.0.1:{d.port}"})
        assert reply.status == 200
        assert d.get("/api/v1/status", auth=False).status == 401


@pytest.mark.parametrize(
    ("args", "config", "words"),
    [
        (("--http", "9464"), "", '--http: "9464" is not ADDR:PORT'),
        (
            ("--http", "example.com:80"),
            "",
            '--http: "example.com:80": example.com is not an IP address',
        ),
        (
            (),
            '[daemon]\nhttp_listen = "127.0.0.1:99999"\n',
            'daemon.http_listen: "127.0.0.1:99999": the port must be a number from 0 to 65535',
        ),
        (
            ("--http", "127.0.0.1:0"),
            '[daemon]\nhttp_token = "short"\n',
            "daemon.http_token must be at least 16",
        ),
        (
            (),
            "[daemon]\nhttp_max_resources = 0\n",
            "daemon.http_max_resources: expected a whole number from 1 to 10000, got 0",
        ),
    ],
)
def test_bad_http_settings_exit_2_and_say_why(
    args: tuple[str, ...], config: str, words: str
) -> None:
    with short_dir() as directory:
        (directory / "c.toml").write_text(config)
        r = run_daemon(
            directory,
            "--socket",
            str(directory / "d.sock"),
            "--config",
            str(directory / "c.toml"),
            *args,
        )
    assert r.returncode == 2, r.stderr
    assert words in r.stderr, r.stderr
    assert r.stderr.startswith("patience-daemon: ")


class _Scripts(HTMLParser):
    """Every <script> and every attribute of the page."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.attributes: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [name for name, _ in attrs]
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


def test_every_answer_carries_a_csp_without_inline_script(tmp_path: Path) -> None:
    with http_daemon(tmp_path) as d:
        for path in ("/", "/static/dashboard.js", "/metrics", "/api/v1/status", "/nowhere"):
            reply = d.get(path)
            csp = reply.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "default-src 'none'" in csp
            assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
            assert reply.headers["X-Content-Type-Options"] == "nosniff"
            assert reply.headers["X-Frame-Options"] == "DENY"
            assert "Access-Control-Allow-Origin" not in reply.headers
        page = _Scripts()
        page.feed(d.get("/").text)
        assert page.scripts == [{"src": "/static/dashboard.js", "defer": None}]
        assert page.inline == []
        assert not [a for a in page.attributes if a.startswith("on")]  # no inline handlers
        script = d.get("/static/dashboard.js").text
        assert "innerHTML" not in script and "eval(" not in script
        assert re.search(r"\bhttps?://(?!www\.w3\.org/2000/svg)", script) is None  # no CDN


def test_a_resource_named_as_markup_is_data(tmp_path: Path) -> None:
    """The JSON carries the id as a string, served as application/json (never as a page)."""
    with http_daemon(tmp_path) as d:
        with d.daemon.client() as client:
            client.send_metrics(
                [
                    {
                        "tool": "repeater",
                        "resource_id": XSS,
                        "start_time": time.time(),
                        "duration": 0.1,
                        "success": False,
                        "exit_code": 3,
                    }
                ]
            )
        summary = d.get("/api/v1/query/resource_summary")
        assert summary.headers["Content-Type"].startswith("application/json")
        assert [row["resource_id"] for row in summary.json()["results"]] == [XSS]
        metrics = d.get("/metrics").text
        assert f'resource="{XSS}"' in metrics


def test_a_port_in_use_stops_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken, short_dir() as directory:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = run_daemon(
            directory, "--socket", str(directory / "d.sock"), "--http", f"127.0.0.1:{port}"
        )
        assert not (directory / "d.sock").exists()
    assert r.returncode == 1, r.stderr
    assert (
        f"cannot listen on http://127.0.0.1:{port}/ for --http: Address already in use" in r.stderr
    )


def test_without_aiohttp_http_says_what_to_install(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    (missing / "aiohttp").mkdir(parents=True)
    (missing / "aiohttp" / "__init__.py").write_text(
        "raise ImportError(\"No module named 'aiohttp'\")\n"
    )
    with short_dir() as directory:
        env = {"PYTHONPATH": str(missing)}
        r = run_daemon(
            directory, "--socket", str(directory / "d.sock"), "--http", "127.0.0.1:0", env=env
        )
        assert run_daemon(directory, "--help", env=env).returncode == 0  # needs no aiohttp
    assert r.returncode == 2, r.stderr
    assert "--http needs aiohttp and prometheus-client" in r.stderr
    assert "pip install 'patience-cli[http]'" in r.stderr
