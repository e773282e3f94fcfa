"""Protocol 1.0 held to its limit with clients that behave as the unpatched Go CLI does (ask
once, sleep until wait_until, run regardless, register late or never: tests/go_v1_client.py),
many processes at once, counting what the commands themselves wrote: the time the daemon's
answer set for the run and the command's own start time.

The daemon's promise is held on the times it set: no window of the limit's length holds more
runs than the limit, and no command ran before its time. Those times are exact for a client told
to wait (wait_until); for one told yes at once they are when the yes arrived, a little after the
daemon decided, so windows are counted a little shorter than the limit's (SLACK). A command
starts later than its time by a process start, which a loaded machine can stretch past any
slack; that lateness is the client's, not the daemon's, so the windows are not counted on it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_support import Daemon, isolated_env, running

GO_CLIENT = str(Path(__file__).with_name("go_v1_client.py"))
SLACK = 0.2  # seconds: how late a yes may reach its client after the daemon decided


def most_in_a_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max((sum(1 for t in ordered if a <= t < a + window) for a in ordered), default=0)


def go_clients(
    daemon: Daemon,
    out: Path,
    resource: str,
    limit: int,
    window_ms: int,
    offsets: str,
    count: int,
    apart: float = 0.0,
    extra: tuple[str, ...] = (),
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for _ in range(count):
        argv = [daemon.socket, resource, str(limit), str(window_ms), offsets, str(out), *extra]
        procs.append(
            subprocess.Popen([sys.executable, GO_CLIENT, *argv], env=isolated_env(daemon.dir))
        )
        time.sleep(apart)
    return procs


def starts(procs: list[subprocess.Popen[bytes]], out: Path, timeout: float = 90.0) -> list[float]:
    """The times the daemon set for the runs, once each command is checked to have started
    at or after its own."""
    for proc in procs:
        assert proc.wait(timeout=timeout) == 0
    planned = []
    for line in out.read_text().splitlines():
        told, ran = map(float, line.split())
        assert ran >= told - 0.001, f"a command ran {told - ran:.3f} s before its time"
        planned.append(told)
    return planned


@pytest.mark.parametrize(
    ("clients", "limit", "window_ms", "apart", "extra"),
    [
        (5, 2, 3000, 0.0, ()),  # seen: 3 to 5 ran at once (nothing held between yes and register)
        (30, 5, 2000, 0.0, ()),  # seen: the 25 refused all ran together at the same wait_until
        (5, 1, 2000, 0.3, ()),  # seen: whole-second request times made runs 0.6 s too close
        (8, 3, 2000, 0.0, ("--no-register",)),  # clients that never register
    ],
)
def test_go_clients_at_once_never_overfill_a_window(
    tmp_path: Path, clients: int, limit: int, window_ms: int, apart: float, extra: tuple[str, ...]
) -> None:
    out = tmp_path / "starts"
    with running() as daemon:
        procs = go_clients(daemon, out, "api:go", limit, window_ms, "0", clients, apart, extra)
        ran = starts(procs, out)
    assert len(ran) == clients  # every client ran, none was lost
    window = window_ms / 1000
    assert most_in_a_window(ran, window - SLACK) <= limit
    # ... and the limit was used: they took about as many windows as they needed, not more.
    span = max(ran) - min(ran)
    assert span <= window * (-(-clients // limit) - 1) + 2.0 + apart * clients


def test_a_plan_that_never_fits_still_runs_in_turn(tmp_path: Path) -> None:
    """Three attempts planned within one window under a limit of 2 (as the Go default offsets
    0,10m,30m under 2 per hour): each client's first attempt is booked in turn, none waits a
    silent minute, and the daemon's log names the resource and the plan."""
    out = tmp_path / "starts"
    with running() as daemon:
        t0 = time.time()
        procs = go_clients(daemon, out, "api:never", 2, 3000, "0,1000,2000", 3)
        ran = starts(procs, out)
        log = daemon.log_text()
    assert len(ran) == 3
    assert most_in_a_window(ran, 3.0 - SLACK) <= 2
    assert max(ran) - t0 < 20.0  # not request_time + 1 minute
    assert "api:never" in log
    assert "can never fit" in log


def test_go_clients_show_in_status_state_and_usage(tmp_path: Path) -> None:
    """While refused Go clients sleep, the daemon says so: waiting and booked attempts in
    resource_state, waiting in status, grants, refusals and waits in the usage query; the
    probe leaves no resource behind."""
    out = tmp_path / "starts"
    with running() as daemon:
        procs = go_clients(daemon, out, "api:seen", 1, 4000, "0", 3)
        deadline = time.monotonic() + 15
        with daemon.client() as client:
            while time.monotonic() < deadline:
                [state] = client.resource_state("api:seen") or [None]
                if state is not None and state["rate_limit"]["booked"] == 3:
                    break
                time.sleep(0.05)
            status = client.status()
            assert state is not None
            assert state["rate_limit"]["limit"] == 1
            assert state["rate_limit"]["waiting"] == 2
            assert state["rate_limit"]["remaining"] == 0
            assert state["tokens_granted"] == 3
            assert state["clients_by_tool"] == {"patience": 3}
            assert status["waiting"] >= 2
            assert client.resource_state("test-connection") == []
            starts(procs, out)
            [usage] = client.query("rate_limit_usage", resource_id="api:seen")
    assert usage["tokens_granted"] == 3
    assert usage["requests_denied"] == 2
    assert usage["requests_waited"] == 3
