"""The dashboard in a real headless Chromium (Debian's, driven by Playwright): after real rpr
and patience runs it lists the resources, draws charts, shows a resource named as markup as
text, updates by itself when a new run happens, and logs no error; it fits a narrow window and
follows the system's dark mode. A screenshot is kept with the test's files (and written to
$PATIENCE_SCREENSHOT when set, which is how docs/dashboard.png is made)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Browser, Page

from http_support import XSS, HttpDaemon, http_daemon

LIMITS = """
[rate_limiting.resources]
"api:external:*" = { limit = 30, window = "1m" }
"database:postgres:orders" = { limit = 5, window = "10s" }
"""


def make_runs(d: HttpDaemon) -> None:
    assert d.rpr("api:external:example.com", "count", "--times", "4", "--", "true").returncode == 0
    r = d.patience(
        "database:postgres:orders", "exponential", "--attempts", "3", "--base-delay", "10ms",
        "--", "sh", "-c", "exit 7",
    )  # fmt: skip
    assert r.returncode == 7, r.stderr
    with d.daemon.client() as client:  # a resource named as markup, failing with exit code 3
        client.send_metrics(
            [
                {
                    "tool": "repeater",
                    "resource_id": XSS,
                    "start_time": time.time(),
                    "duration": 0.05,
                    "success": False,
                    "exit_code": 3,
                    "command": ["sh", "-c", "<script>alert(2)</script>"],
                }
            ]
        )
        assert client.acquire(XSS).granted


def open_dashboard(browser: Browser, d: HttpDaemon, problems: list[str]) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss())
    )
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.goto(d.url)
    page.wait_for_selector('#live[data-state="live"]', timeout=10_000)
    return page


def until(check: Callable[[], bool], what: str, timeout: float = 6.0) -> float:
    """Poll `check` from here (the page's CSP forbids the string evaluation that Playwright's
    wait_for_function uses); the seconds it took."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def resource_ids(page: Page) -> list[str]:
    return page.locator("#resources tbody td.id").all_text_contents()


def test_the_dashboard_shows_what_the_daemon_knows(browser: Browser, tmp_path: Path) -> None:
    problems: list[str] = []
    with http_daemon(tmp_path, config=LIMITS) as d:
        make_runs(d)
        page = open_dashboard(browser, d, problems)
        until(lambda: page.locator("#resources tbody tr").count() >= 3, "three resources listed")
        assert sorted(resource_ids(page)) == sorted(
            ["api:external:example.com", "database:postgres:orders", XSS]
        )
        row = page.locator("#resources tbody tr", has_text="api:external:example.com")
        assert "30 per 1m (diophantine)" in row.inner_text()
        assert "4 / 30" in row.inner_text()  # the utilisation bar's figure
        assert float(row.locator(".usebar rect.fill").get_attribute("width") or 0) > 0

        # The markup is text: no image, no handler ran, the id is shown as written.
        assert page.locator("img").count() == 0
        assert page.locator("script").count() == 1
        assert XSS in page.locator("#failures").inner_text()
        commands = page.locator("#failures td.command").all_text_contents()
        assert "sh -c <script>alert(2)</script>" in commands
        assert XSS in page.locator("#legend").inner_text()

        # Failures with their exit codes; the tool comparison names rpr and patience.
        codes = page.locator("#failures tbody td.bad").all_text_contents()
        assert codes.count("7") == 3 and codes.count("3") == 1
        tools = page.locator("#tools tbody").inner_text()
        assert "rpr" in tools and "patience" in tools

        # Charts: one line per resource, each with points.
        for chart in ("#chart-runs", "#chart-success", "#chart-p95"):
            paths = page.locator(f"{chart} path.series")
            assert paths.count() >= 2, chart
            assert all(
                d_attr and d_attr.startswith("M")
                for d_attr in (paths.nth(i).get_attribute("d") for i in range(paths.count()))
            )

        # A new run shows up within a few seconds, without a reload.
        assert (
            d.rpr("api:external:new.example.com", "count", "--times", "1", "--", "true").returncode
            == 0
        )
        start = time.monotonic()
        page.locator("#resources tbody td.id", has_text="api:external:new.example.com").wait_for(
            timeout=6_000
        )
        assert time.monotonic() - start < 6

        # Other ranges and the per-tool view draw too.
        page.click('button[data-range="15m"]')
        page.click('button[data-group="tool"]')
        until(lambda: "rpr" in page.locator("#legend").inner_text(), "the per-tool legend")
        assert sorted(page.locator("#legend li").all_text_contents()) == ["patience", "rpr"]
        page.click('button[data-group="resource"]')
        page.click('button[data-range="1h"]')
        until(lambda: page.locator("#legend li").count() >= 4, "the per-resource legend")

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("PATIENCE_SCREENSHOT"):
            shutil.copyfile(shot, os.environ["PATIENCE_SCREENSHOT"])
        page.close()
    assert problems == []


def test_the_dashboard_fits_a_narrow_window_and_follows_dark_mode(
    browser: Browser, tmp_path: Path
) -> None:
    problems: list[str] = []
    with http_daemon(tmp_path, config=LIMITS) as d:
        make_runs(d)
        page = open_dashboard(browser, d, problems)
        light = page.evaluate("getComputedStyle(document.body).backgroundColor")
        page.emulate_media(color_scheme="dark")
        dark = page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert light == "rgb(255, 255, 255)" and dark != light
        page.set_viewport_size({"width": 360, "height": 800})
        page.wait_for_timeout(300)
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(tmp_path / "dashboard-narrow-dark.png"), full_page=True)
        page.close()
    assert problems == []


def test_the_dashboard_asks_for_the_token(browser: Browser, tmp_path: Path) -> None:
    problems: list[str] = []
    token = "0123456789abcdef0123456789abcdef"
    with http_daemon(tmp_path, token=token) as d:
        page = browser.new_page()
        page.on("pageerror", lambda exc: problems.append(str(exc)))
        page.goto(d.url)
        page.wait_for_selector('#live[data-state="down"]')
        assert page.locator("#login").is_visible()
        page.fill("#token", token)
        page.click("#login button")
        page.wait_for_selector('#live[data-state="live"]', timeout=10_000)
        assert not page.locator("#login").is_visible()
        page.goto(d.url + "#token=" + token)  # a link with the token works too, and drops it
        page.reload()
        page.wait_for_selector('#live[data-state="live"]', timeout=10_000)
        assert "token" not in page.url
        page.close()
    assert problems == []


ALERTING = f"""
[rate_limiting.resources]
"{XSS}" = {{ limit = 1, window = "1h" }}
"api:brief" = {{ limit = 1, window = "5s" }}

[alerting]
exhaustion_for = "1s"
min_hold = "1s"
command = ["false"]
"""


def alert_status(page: Page, resource: str) -> str:
    rows = page.locator("#alerts tbody tr").filter(has=page.locator("td.id", has_text=resource))
    return rows.first.locator("td.status").inner_text() if rows.count() else ""


def test_the_alerts_panel_shows_alerts_live(browser: Browser, tmp_path: Path) -> None:
    problems: list[str] = []
    with http_daemon(tmp_path, config=ALERTING) as d:
        page = open_dashboard(browser, d, problems)
        assert page.locator("#alerts-empty").is_visible()
        assert page.locator("#alerts tbody tr").count() == 0
        assert not page.locator("#alerts").is_visible()  # no table header over nothing
        with d.daemon.client(tool="repeater", client_id="rpr-web1-42") as client:
            assert client.acquire(XSS).granted and client.acquire("api:brief").granted

        # Both fire within seconds, shown without a reload; the markup id is text.
        until(lambda: alert_status(page, XSS) == "firing", "the XSS resource's alert", 10)
        until(lambda: alert_status(page, "api:brief") == "firing", "api:brief's alert", 10)
        assert not page.locator("#alerts-empty").is_visible()
        assert page.locator("#alerts").is_visible()
        row = page.locator("#alerts tbody tr", has=page.locator("td.id", has_text=XSS))
        cells = row.locator("td").all_text_contents()
        assert cells[:3] == ["firing", "exhaustion", XSS]
        assert cells[3] != "–" and cells[4] == "–"  # since when; not ended
        assert cells[5:7] == ["rpr", "rpr-web1-42"]
        assert "100% of its limit (1 per 1h) in use" in cells[7]
        assert page.locator("img").count() == 0 and page.locator("script").count() == 1
        until(
            lambda: "command notifier:" in page.locator("#notifiers").inner_text(),
            "the failing command notifier",
            10,
        )
        assert "false exited 1" in page.locator("#notifiers").inner_text()

        # api:brief's window passes: its alert resolves and stays in the panel, ended.
        until(lambda: alert_status(page, "api:brief") == "resolved", "the resolution", 15)
        resolved = page.locator("#alerts tbody tr.resolved").locator("td").all_text_contents()
        assert resolved[:3] == ["resolved", "exhaustion", "api:brief"] and resolved[4] != "–"
        statuses = page.locator("#alerts tbody td.status").all_text_contents()
        assert statuses == ["firing", "resolved"]  # the active ones first
        page.screenshot(path=str(tmp_path / "dashboard-alerts.png"), full_page=True)
        page.close()
    assert problems == []
