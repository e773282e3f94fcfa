"""Cross-tool feedback end to end (docs/adaptive-limits.md): a real local HTTP server that
allows 20 requests a second (429 with Retry-After above it), four `rpr` and two `patience`
instances calling it with `curl` through one real daemon, asking together for several times
its limit. Measured in one run, without feedback (curl prints no headers: the tools see no
throttle signal) and with it (curl -i): with it, 429 responses fall by at least 90% while
the successful requests per second, once settled (from 10s on), stay at or above 80% of the
server's limit; the learned limit settles within 20% of the true one (its median, and at
least 60% of the samples: after each throttle it dips to half, and climbs back within a few
seconds), and follows the server when it raises its limit to 40. The figures are printed
(pytest -s) and recorded in docs/performance.md."""

from __future__ import annotations

import statistics
import subprocess
import threading
import time
from pathlib import Path

import pytest

from daemon_support import Daemon, isolated_env, short_dir
from throttled_server import Limited, throttled_server
from tools import PATIENCE, RPR

pytestmark = pytest.mark.slow

TRUE_LIMIT = 20
RAISED = 40
DECLARED = "100/1s"  # what each instance asks for: five times the server's limit together


def tools(
    daemon: Daemon, directory: Path, url: str, resource: str, seconds: float, headers: bool
) -> list[subprocess.Popen[bytes]]:
    """Four rpr and two patience (in a loop: each ends at its first success), all through
    the daemon. `headers`: curl prints the response's head (-i), so a 429 is seen."""
    daemon_flags = ["--daemon", "--daemon-socket", daemon.socket, "--resource-id", resource]
    curl = ["curl", "-s", *(["-i"] if headers else []), url]
    rpr = [RPR, "rate-limit", "--rate", DECLARED, "--for", f"{seconds}s", *daemon_flags, "--"]
    patience = " ".join(
        [
            PATIENCE,
            "fixed",
            "--delay",
            "20ms",
            "--attempts",
            "100",
            "--quiet",
            *daemon_flags,
            "--",
            *curl[:-1],
            "--fail-with-body",
            curl[-1],
        ]
    )
    loop = f"end=$(($(date +%s) + {int(seconds)})); while [ $(date +%s) -lt $end ]; do {patience}; done"
    env = isolated_env(directory)
    procs = [
        subprocess.Popen([*rpr, *curl], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        for _ in range(4)
    ]
    procs += [
        subprocess.Popen(
            ["sh", "-c", loop], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        for _ in range(2)
    ]
    return procs


def finish(procs: list[subprocess.Popen[bytes]], timeout: float) -> None:
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert proc.returncode in (0, 1), (
            proc.returncode,
            proc.stderr.read() if proc.stderr else "",
        )


class Sampler(threading.Thread):
    """The resource's limit in force, and whether it was learned, twice a second."""

    def __init__(self, daemon: Daemon, resource: str) -> None:
        super().__init__(daemon=True)
        self.daemon_ = daemon
        self.resource = resource
        self.samples: list[tuple[float, int | None, bool]] = []
        self.done = threading.Event()

    def run(self) -> None:
        with self.daemon_.client("patience", "sampler") as client:
            while not self.done.wait(0.5):
                states = client.resource_state(self.resource)
                limit = states[0]["rate_limit"] if states else None
                if isinstance(limit, dict):
                    self.samples.append(
                        (time.monotonic(), limit["limit"], bool(limit.get("learned")))
                    )

    def between(self, start: float, end: float) -> list[int]:
        return [n for t, n, learned in self.samples if start <= t < end and learned and n]


def within(samples: list[int]) -> float:
    """The share of `samples` within 20% of the true limit."""
    inside = [n for n in samples if 0.8 * TRUE_LIMIT <= n <= 1.2 * TRUE_LIMIT]
    return len(inside) / max(1, len(samples))


def rate(server: Limited, start: float, end: float) -> tuple[float, float]:
    ok, refused = server.counts(start, end)
    return ok / (end - start), refused / (end - start)


def test_feedback_cuts_429s_keeps_throughput_and_learns_the_servers_limit() -> None:
    with short_dir() as directory, throttled_server(TRUE_LIMIT) as (url, server):
        daemon = Daemon(directory).start()
        try:
            # Without feedback: the tools see no throttle signal; the declared 100/s holds.
            start = time.monotonic()
            finish(tools(daemon, directory, url, "api:bench:without", 8, headers=False), 40)
            without_ok, without_429 = rate(server, start + 1, time.monotonic())
            time.sleep(1.5)  # the server's window forgets them

            # With feedback, the server at 20/s for 40s, then 40/s for 20s.
            sampler = Sampler(daemon, "api:bench:with")
            sampler.start()
            start = time.monotonic()
            procs = tools(daemon, directory, url, "api:bench:with", 60, headers=True)
            time.sleep(40)
            raised_at = time.monotonic()
            server.limit = RAISED
            finish(procs, 60)
            sampler.done.set()
            sampler.join()
            with_429 = rate(server, start, raised_at)[1]  # the 429s of all 40s
            with_ok = rate(server, start + 10, raised_at)[0]  # once settled
            settled = sampler.between(start + 10, raised_at)
            after = sampler.between(raised_at, time.monotonic())
            raised_ok, raised_429 = rate(server, raised_at + 5, time.monotonic())
        finally:
            daemon.ensure_stopped()
        log = daemon.log_text()
    print(
        f"\nwithout feedback: {without_ok:.1f} ok/s, {without_429:.1f} 429/s"
        f"\nwith feedback (server at {TRUE_LIMIT}/s, 40s): {with_429:.2f} 429/s"
        f" ({100 * (1 - with_429 / without_429):.1f}% fewer); from 10s on {with_ok:.1f} ok/s"
        f"\nlearned limit from 10s on: min {min(settled, default=0)}, max {max(settled, default=0)},"
        f" median {statistics.median(settled or [0])}, within 20% of {TRUE_LIMIT}"
        f" {100 * within(settled):.0f}% of the time"
        f"\nserver raised to {RAISED}/s: learned limit up to {max(after, default=0)};"
        f" {raised_ok:.1f} ok/s, {raised_429:.2f} 429/s from 5s after"
    )
    assert without_429 >= 2 * TRUE_LIMIT, "the tools did not ask for several times the limit"
    assert with_429 <= 0.1 * without_429, log[-3000:]
    assert with_ok >= 0.8 * TRUE_LIMIT
    assert 0.8 * TRUE_LIMIT <= statistics.median(settled) <= 1.2 * TRUE_LIMIT, settled
    assert within(settled) >= 0.6, settled
    assert max(after) >= 0.8 * RAISED, after
