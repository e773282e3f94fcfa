"""The dashboard's Fleet panel in a real headless Chromium (Debian's, driven by Playwright): two
real daemons on one real redis-server, the panel lists both (this daemon marked) with their
clients and shares, a resource named as markup shown as text; with the memory backend the
panel stays hidden and the page does not ask for the fleet."""

from __future__ import annotations

import time
from pathlib import Path

from playwright.sync_api import Browser

from daemon_support import Daemon, short_dir
from http_support import XSS, http_daemon
from redis_support import redis_server
from test_dashboard import open_dashboard, until

LIMITS = f"""
[rate_limiting.resources]
"api:fleet" = {{ limit = 100, window = "1m" }}
"{XSS}" = {{ limit = 100, window = "1m" }}
"""


def take(daemon: Daemon, resource: str, tool: str, count: int) -> None:
    with daemon.client(tool, f"{tool}-{time.monotonic_ns()}") as client:
        for _ in range(count):
            assert client.acquire(resource).granted


def test_the_fleet_panel_lists_every_daemon_with_its_share(
    browser: Browser, tmp_path: Path
) -> None:
    problems: list[str] = []
    with short_dir() as directory, redis_server(directory) as server:
        keys = f'backend = "redis"\nredis_url = "{server.url}"'
        with http_daemon(tmp_path, daemon_keys=keys, config=LIMITS) as d, short_dir() as other:
            peer = Daemon(other, f"[daemon]\n{keys}\n{LIMITS}")
            try:
                peer.start()
                take(d.daemon, "api:fleet", "repeater", 3)
                take(peer, "api:fleet", "patience", 1)
                take(peer, XSS, "repeater", 2)
                page = open_dashboard(browser, d, problems)
                rows = page.locator("#fleet tbody tr")

                def listed() -> bool:
                    text = page.locator("#fleet").inner_text()
                    return rows.count() == 2 and "(75%)" in text and "(25%)" in text

                until(listed, "both daemons with their shares", timeout=15.0)
                assert page.locator("#fleet-section").is_visible()
                mine, theirs = rows.nth(0), rows.nth(1)
                assert "self" in (mine.get_attribute("class") or "")
                assert "(this daemon)" in mine.inner_text()
                assert "api:fleet: 3 of 100 per 1m (75%)" in mine.inner_text()
                assert peer.proc is not None and str(peer.proc.pid) in theirs.inner_text()
                assert "api:fleet: 1 of 100 per 1m (25%)" in theirs.inner_text()
                assert f"{XSS}: 2 of 100 per 1m (100%)" in theirs.inner_text()
                assert "rpr 1" in theirs.inner_text() and "patience 1" in theirs.inner_text()
                assert page.locator("img").count() == 0  # the markup is text
                assert "2 live daemons" in page.locator("#fleet-note").inner_text()
                page.screenshot(path=str(tmp_path / "dashboard-fleet.png"), full_page=True)
                page.close()
            finally:
                peer.ensure_stopped()
    assert problems == []


def test_with_the_memory_backend_the_fleet_panel_stays_hidden(
    browser: Browser, tmp_path: Path
) -> None:
    problems: list[str] = []
    asked: list[str] = []
    with http_daemon(tmp_path, config=LIMITS) as d:
        page = browser.new_page()
        page.on("request", lambda request: asked.append(request.url))
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(d.url)
        page.wait_for_selector('#live[data-state="live"]', timeout=10_000)
        page.wait_for_timeout(2500)  # a second refresh
        assert not page.locator("#fleet-section").is_visible()
        assert sum("/api/v1/status" in url for url in asked) >= 2
        assert not any("/api/v1/fleet" in url for url in asked)
        page.close()
    assert problems == []
