"""The HTTP side does not slow the socket: token acquisitions (8 client processes, as in
bench_daemon) against a daemon serving `--http` while a client scrapes `/metrics` every second,
against the same daemon without HTTP. Both daemons track 50 limited resources with records, so
a scrape has real work (a gauge set per resource, counters, a histogram per resource). Rounds
alternate A/B; the ratio is of the median rates. Also, for information, how long a scrape takes.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench_daemon import LIMIT, _quantile, _round, _wait_for
from common import Row, tool

CLIENTS = 8
ROUNDS = 6  # alternating which side goes first
RESOURCES = 50
SCRAPE_EVERY = 1.0


def run() -> list[Row]:
    directory = Path(tempfile.mkdtemp(prefix="bench-http-", dir="/tmp"))
    plain = served = None
    try:
        plain = _start(directory, "p")
        served = _start(directory, "h", "--http", "127.0.0.1:0")
        url = _url(directory / "h.log")
        for name in ("p", "h"):
            _populate(str(directory / f"{name}.sock"))
        scraper = _Scraper(url + "metrics")
        scraper.start()
        try:
            rates: dict[str, list[float]] = {"p": [], "h": []}
            latencies: dict[str, list[int]] = {"p": [], "h": []}
            for round_number in range(ROUNDS):
                order = ("p", "h") if round_number % 2 == 0 else ("h", "p")
                for name in order:
                    rate, samples, _ = _round("ours", str(directory / f"{name}.sock"), CLIENTS)
                    rates[name].append(rate)
                    latencies[name] += samples
        finally:
            scraper.stop()
        return _rows(rates, latencies, scraper.seconds)
    finally:
        for proc in (plain, served):
            if proc is not None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        shutil.rmtree(directory, ignore_errors=True)


def _start(directory: Path, name: str, *args: str) -> subprocess.Popen[bytes]:
    config = directory / f"{name}.toml"
    config.write_text(
        f'[daemon]\nstorage_path = "{directory / name}.db"\nmax_connections = 1024\n'
        f'[rate_limiting.resources]\n"bench" = {{ limit = {LIMIT}, window = "1s" }}\n'
        f'"r*" = {{ limit = 1000, window = "1m" }}\n'
    )
    env = {  # only this configuration: not the host's system, user or project files
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PATIENCE_", "RPR_", "XDG_"))
    }
    env.update(PATIENCE_SYSTEM_CONFIG_DIR=str(directory), XDG_CONFIG_HOME=str(directory))
    with open(directory / f"{name}.log", "wb") as log:
        proc = subprocess.Popen(
            [tool("patience-daemon"), "--socket", str(directory / f"{name}.sock"), "--config",
             str(config), *args],
            stderr=log,
            env=env,
            cwd=directory,
        )  # fmt: skip
    _wait_for(directory / f"{name}.sock")
    return proc


def _url(log: Path) -> str:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        found = re.search(r"dashboard on (http://\S+/)", log.read_text())
        if found:
            return found.group(1)
        time.sleep(0.05)
    raise SystemExit(f"bench_http: no HTTP address in {log}")


def _populate(socket_path: str) -> None:
    """RESOURCES resources with grants and execution records, as a busy host has."""
    from patience.daemon.client import DaemonClient

    with DaemonClient(socket_path, "repeater", "bench-populate", timeout=10.0) as client:
        records = []
        for i in range(RESOURCES):
            client.acquire(f"r{i}")
            records += [
                {"tool": "repeater", "resource_id": f"r{i}", "start_time": time.time(),
                 "duration": 0.01 * (k + 1), "success": k % 4 != 0, "exit_code": 0}
                for k in range(20)
            ]  # fmt: skip
        client.send_metrics(records)


class _Scraper:
    """GET url every SCRAPE_EVERY seconds in a thread; the time each scrape took."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.seconds: list[float] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(10)

    def _loop(self) -> None:
        while not self._done.is_set():
            began = time.perf_counter()
            with urllib.request.urlopen(self.url, timeout=10) as reply:
                if b"patience_executions_total" not in reply.read():
                    raise SystemExit("bench_http: /metrics lacks the execution counters")
            self.seconds.append(time.perf_counter() - began)
            self._done.wait(SCRAPE_EVERY)


def _rows(
    rates: dict[str, list[float]], latencies: dict[str, list[int]], scrapes: list[float]
) -> list[Row]:
    served, plain = statistics.median(rates["h"]), statistics.median(rates["p"])
    ratio = served / plain
    p99 = {name: _quantile(samples, 0.99) for name, samples in latencies.items()}
    scrape = statistics.median(scrapes) if scrapes else float("nan")
    return [
        Row(
            f"daemon acquire/s, {CLIENTS} clients, /metrics scraped every second",
            f"{served:,.0f}/s",
            f"{plain:,.0f}/s (no HTTP)",
            ratio,
            ">= 0.95x",
            ratio >= 0.95,
        ),
        Row(
            f"daemon p99 latency, {CLIENTS} clients, /metrics scraped every second",
            f"{p99['h'] / 1000:.3f} ms",
            f"{p99['p'] / 1000:.3f} ms (no HTTP)",
            p99["h"] / p99["p"],
            "info",
            True,
        ),
        Row(
            f"GET /metrics, {RESOURCES} resources ({len(scrapes)} scrapes)",
            f"{scrape * 1000:.2f} ms",
            "-",
            1.0,
            "info",
            True,
        ),
    ]
