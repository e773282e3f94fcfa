"""A real daemon and several real client processes: a global limit holds across processes,
waiting is first come first served, equal clients get equal shares, a waiter that disappears
frees its place, and metrics come back as they were sent."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time

from daemon_support import Daemon, finish, running, worker
from integration_support import most_in_window

LOOP = """
import sys, time
from patience.daemon.client import DaemonClient
socket_path, client_id, resource, count, start, stop = sys.argv[1:7]
count, start, stop = int(count), float(start), float(stop)
time.sleep(max(0.0, start - time.time()))
with DaemonClient(socket_path, "repeater", client_id, timeout=10.0) as client:
    got = 0
    while got < count and time.time() < stop:
        grant = client.acquire(resource, max_wait=30.0)
        assert grant.granted, grant
        got += 1
        print(time.time(), flush=True)
"""

ONE = """
import sys, time
from patience.daemon.client import DaemonClient
socket_path, client_id, resource = sys.argv[1:4]
with DaemonClient(socket_path, "patience", client_id, timeout=10.0) as client:
    grant = client.acquire(resource, max_wait=60.0)
    print(grant.granted, time.time(), flush=True)
"""


def times_of(output: str) -> list[float]:
    return [float(line) for line in output.split()]


def jain(shares: list[int]) -> float:
    return sum(shares) ** 2 / (len(shares) * sum(s * s for s in shares))


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def waiting(daemon: Daemon) -> int:
    with daemon.client("patience", f"probe-{time.monotonic_ns()}") as client:
        return int(client.status()["waiting"])  # type: ignore[call-overload]


def arrived(daemon: Daemon, resource: str) -> int:
    """The clients that asked for `resource` since its first grant: those served after it and
    those still waiting. A worker slow to start on a loaded machine may find the one before it
    already served, so the queue alone would never show it (served is read first: a grant in
    between can only undercount, and the caller asks again)."""
    with daemon.client("patience", f"probe-{time.monotonic_ns()}") as client:
        [state] = client.resource_state(resource)
        served = int(state["tokens_granted"]) - 1  # type: ignore[call-overload]
        return served + int(client.status()["waiting"])  # type: ignore[call-overload]


def test_global_limit_holds_across_three_processes() -> None:
    config = '[rate_limiting.resources]\n"test-api" = { limit = 10, window = "1s" }\n'
    with running(config) as daemon:
        start = time.time() + 0.5
        procs = [
            worker(LOOP, daemon.socket, f"rpr-{i}", "test-api", "20", str(start), str(start + 60))
            for i in range(3)
        ]
        outputs = finish(procs)
        with daemon.client() as client:
            [usage] = client.query("rate_limit_usage", resource_id="test-api")
    grants = [t for out in outputs for t in times_of(out)]
    assert len(grants) == 60
    assert all(len(times_of(out)) == 20 for out in outputs)
    # Clients timestamp grants after the reply travels back, so allow a little jitter.
    assert most_in_window(grants, 0.95) <= 10
    assert max(grants) - min(grants) >= 4.9  # 60 tokens at 10 per second: six windows
    assert usage["tokens_granted"] == 60
    assert usage["limit"] == 10


def test_waiters_are_served_first_come_first_served() -> None:
    config = '[rate_limiting.resources]\n"fifo" = { limit = 1, window = "400ms" }\n'
    with running(config) as daemon, daemon.client("patience", "holder") as holder:
        assert holder.acquire("fifo").granted
        procs = []
        for i in range(4):
            procs.append(worker(ONE, daemon.socket, f"w{i}", "fifo"))
            wait_for(lambda n=i + 1: arrived(daemon, "fifo") == n)
        outputs = finish(procs)
    results = [out.split() for out in outputs]
    assert all(granted == "True" for granted, _ in results)
    times = [float(at) for _, at in results]
    assert times == sorted(times)
    assert all(b - a >= 0.3 for a, b in itertools.pairwise(times))


def test_three_equal_clients_get_equal_shares() -> None:
    config = '[rate_limiting.resources]\n"shared" = { limit = 20, window = "1s" }\n'
    with running(config) as daemon:
        start = time.time() + 0.7
        stop = start + 5.0
        procs = [
            worker(LOOP, daemon.socket, f"c{i}", "shared", "100000", str(start), str(stop))
            for i in range(3)
        ]
        outputs = finish(procs)
    # Skip the first window: who wins the very first burst is a race, not a share.
    shares = [len([t for t in times_of(out) if start + 1.0 <= t < stop]) for out in outputs]
    assert sum(shares) >= 60
    assert jain(shares) >= 0.95, shares


def test_a_waiter_that_disconnects_frees_its_place() -> None:
    config = '[rate_limiting.resources]\n"scarce" = { limit = 1, window = "1500ms" }\n'
    with running(config) as daemon, daemon.client("patience", "holder") as holder:
        assert holder.acquire("scarce").granted
        taken = time.time()
        quitter = worker(ONE, daemon.socket, "quitter", "scarce")
        wait_for(lambda: waiting(daemon) == 1)
        patient = worker(ONE, daemon.socket, "patient", "scarce")
        wait_for(lambda: waiting(daemon) == 2)
        os.kill(quitter.pid, signal.SIGKILL)
        quitter.wait()
        wait_for(lambda: waiting(daemon) == 1)
        [out] = finish([patient])
        granted, at = out.split()
        assert granted == "True"
        # The patient client got the token the quitter was first in line for.
        assert 1.2 <= float(at) - taken <= 5.0
        [state] = holder.resource_state("scarce")
    clients = state["active_clients"]
    assert isinstance(clients, dict)
    assert clients["quitter"]["rate_limit_tokens"] == 0
    assert clients["patient"]["rate_limit_tokens"] == 1
    assert state["tokens_granted"] == 2


SENDER = """
import json, sys
from patience.daemon.client import DaemonClient
socket_path, tool, records = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with DaemonClient(socket_path, tool, f"{tool}-sender", timeout=10.0) as client:
    print(client.send_metrics(records))
"""


def record(tool: str, resource: str, start: float, duration: float, ok: bool, n: int) -> dict:  # type: ignore[type-arg]
    return {
        "tool": tool,
        "resource_id": resource,
        "command": ["curl", "-f", "https://api.example.com"],
        "start_time": start,
        "duration": duration,
        "success": ok,
        "exit_code": 0 if ok else 22,
        "attempt_number": n if tool == "patience" else 0,
        "execution_number": n if tool == "repeater" else 0,
        "labels": {"env": "test"},
    }


def test_metrics_from_several_processes_come_back_from_queries() -> None:
    base = 1_800_000_000.0
    repeater = [record("repeater", "api", base + i, 0.5, i < 3, i + 1) for i in range(5)]
    patience = [record("patience", "api", base + 10 + i, 1.5, i == 2, i + 1) for i in range(3)]
    other = [record("repeater", "db", base + 20, 2.0, True, 1)]
    with running() as daemon:
        outputs = finish(
            [
                worker(SENDER, daemon.socket, "repeater", json.dumps(repeater + other)),
                worker(SENDER, daemon.socket, "patience", json.dumps(patience)),
            ]
        )
        assert [int(o) for o in outputs] == [6, 3]
        with daemon.client() as client:
            summary = client.query("resource_summary")
            api_repeater = client.query("resource_summary", resource_id="api", tools=["repeater"])
            early = client.query("resource_summary", start=base, end=base + 4.5)
            comparison = client.query("tool_comparison", resource_id="api")
            [state] = client.resource_state("api")
    by_id = {row["resource_id"]: row for row in summary}
    assert by_id["api"]["total_executions"] == 8
    assert by_id["api"]["successful_runs"] == 4
    assert by_id["api"]["failed_runs"] == 4
    assert by_id["api"]["average_duration"] == (5 * 0.5 + 3 * 1.5) / 8
    assert by_id["api"]["last_execution"] == base + 12
    assert by_id["db"]["total_executions"] == 1
    assert api_repeater == [
        {
            "resource_id": "api",
            "total_executions": 5,
            "successful_runs": 3,
            "failed_runs": 2,
            "average_duration": 0.5,
            "last_execution": base + 4,
            "active_clients": ["patience-sender", "repeater-sender"],
        }
    ]
    assert [(r["resource_id"], r["total_executions"]) for r in early] == [("api", 5)]
    tools = {row["tool"]: row for row in comparison}
    assert tools["repeater"]["success_rate"] == 0.6
    assert tools["patience"]["total_executions"] == 3
    assert tools["patience"]["successful_runs"] == 1
    assert state["total_executions"] == 8
    assert state["clients_by_tool"] == {"patience": 1, "repeater": 1}
