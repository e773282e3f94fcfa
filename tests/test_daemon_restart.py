"""Restarts and outages keep their promise: a stopping daemon is an unavailable one (its clients
fall back and come back, they do not exit), the grants of the last window survive a restart
(the state file, the clients' grant reports), clients that fail open keep to their share of the
limit, and a daemon that is back is used again at once. The coordinator's part as pure code with
the clock as a parameter; the rest through real `rpr` and `patience-daemon` processes, counting
the starts from the commands' own timestamps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from daemon_support import Daemon, running, short_dir
from integration_support import World, most_in_window, wait_for, warnings, world
from patience.config.resources import ResourceLimit
from patience.daemon.coordinator import Coordinator
from patience.daemon.protocol import Acquire, AcquireResponse, ReportGrants
from patience.settings import Limit
from tools import RPR, pid_alive

R = "api:restart"
LIMIT, WINDOW = 5, 2.0
LIMITS = f'[rate_limiting.resources]\n"{R}" = {{ limit = {LIMIT}, window = "2s" }}\n'
# Windows are counted a little short: a command stamps its time a few ms after its grant, and
# two grants exactly one window apart must not look like two in one window.
SPAN = WINDOW - 0.1
STAMP = 'date +%s.%N >> "$0"'  # each start appends its own high-resolution time


# --- the coordinator, as pure code ---------------------------------------------------------


def coordinator(limit: int = LIMIT, window: float = WINDOW) -> Coordinator:
    return Coordinator({R: ResourceLimit(Limit(limit, window))}, "diophantine", 60.0)


def take(coord: Coordinator, client_id: str, now: float) -> AcquireResponse:
    result = coord.acquire(coord.connect(client_id, "repeater", now), Acquire(resource_id=R), now)
    assert isinstance(result, AcquireResponse)
    return result


@given(limit=st.integers(1, 50), clients=st.integers(1, 60))
def test_the_shares_of_the_clients_add_up_to_the_limit(limit: int, clients: int) -> None:
    coord = coordinator(limit=limit, window=1000.0)
    ids = [f"c{i:02d}" for i in range(clients)]
    for number, client_id in enumerate(ids):
        take(coord, client_id, number * 1e-3)  # one each while tokens last, the rest refused
    resource, now = coord.resources[R], clients * 1e-3
    shares = [coord.share(resource, client_id, now) or 0 for client_id in ids]
    assert sum(shares) == limit  # exactly: fractions go to whole clients, none lost
    low, high = limit // clients, -(-limit // clients)
    assert all(low <= share <= high for share in shares)


def test_a_grant_carries_the_share_of_the_clients_using_the_resource() -> None:
    coord = coordinator()
    assert take(coord, "a", 0.0).share == LIMIT  # alone: the whole limit
    assert take(coord, "b", 0.2).share == 2  # 5 among a and b: a gets the extra token
    assert take(coord, "a", 0.4).share == 3
    assert take(coord, "c", 0.6).share == 1  # 5 among three: 2, 2, 1
    assert take(coord, "c", 2.7).share == LIMIT  # the others' grants left the window


def test_a_report_counts_and_replaces_the_reporters_own_grants() -> None:
    coord = coordinator()
    now = 100.0
    a = coord.connect("a", "repeater", now)
    b = coord.connect("b", "repeater", now)
    report = ReportGrants(resource_id=R, times=[])
    # Seven times in the window count as the limit (the newest five); one older and one in the
    # future are dropped or taken as now.
    times = [now - 0.1 * i for i in range(7)] + [now - WINDOW - 1, now + 50]
    assert coord.report_grants(a, report, times, now) == LIMIT
    assert not take(coord, "b", now).granted
    # Reported again, a's account replaces the first: nothing counts twice.
    assert coord.report_grants(a, report, [now - 1.5], now) == 1
    assert coord.report_grants(b, report, [now - 1.5, now - 1.4], now) == 2
    assert [take(coord, "c", now).granted for _ in range(3)] == [True, True, False]
    assert not take(coord, "b", now + 0.49).granted
    assert take(coord, "b", now + 0.51).granted  # a's grant at now - 1.5 has left the window


def test_restored_grants_count_until_they_leave_the_window() -> None:
    coord = coordinator()
    now = 50.0
    grants = [(now - 1.9, 2, "old-1"), (now - 1.0, 3, "old-2"), (now - 9.0, 5, "gone")]
    coord.restore_grants(R, WINDOW, grants, now)
    assert not take(coord, "a", now).granted
    assert take(coord, "a", now + 0.11).granted  # the two tokens of now - 1.9 have left
    assert coord.saved_grants(now + 0.11) == [
        (R, WINDOW, [(now - 1.0, 3, "old-2"), (now + 0.11, 1, "a")])
    ]


# --- a stopping daemon is an unavailable daemon -------------------------------------------------


def configure(w: World) -> None:
    """The limit where the tools (and a daemon they start) read it."""
    (w.home / "config" / "patience").mkdir(parents=True, exist_ok=True)
    (w.home / "config" / "patience" / "config.toml").write_text(LIMITS)


def start_clients(
    w: World, count: int, duration: str, *flags: str
) -> tuple[list[subprocess.Popen[str]], list[Path]]:
    procs, files = [], []
    for number in range(count):
        stamps = w.home / f"stamps-{number}"
        stamps.touch()
        files.append(stamps)
        argv = [
            RPR, "interval", "--every", "100ms", "--for", duration, *flags,
            "--daemon", "--daemon-socket", w.socket, "--resource-id", R,
            "--", "sh", "-c", STAMP, str(stamps),
        ]  # fmt: skip
        procs.append(w.start(*argv))
    return procs, files


def stamps(path: Path) -> list[float]:
    return [float(line) for line in path.read_text().split()]


def finish(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    results = []
    try:
        for proc in procs:
            _, err = proc.communicate(timeout=120)
            results.append((proc.returncode, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_sigterm_while_clients_wait_they_fall_back_and_run_on(tmp_path: Path) -> None:
    """systemctl restart: every client waiting for a token is told the daemon is stopping; it
    falls back to its share and goes on, it does not exit."""
    with world(tmp_path) as w:
        configure(w)
        daemon = w.daemon(LIMITS).start()
        try:
            procs, files = start_clients(w, 4, "5s", "--no-daemon-auto-start")
            wait_for(lambda: all(stamps(f) for f in files), what="a grant for every client")

            def waiting() -> bool:
                with daemon.client() as client:
                    return client.status()["waiting"] != 0

            wait_for(waiting, what="clients waiting for a token")
            stopped = time.time()
            daemon.stop(signal.SIGTERM)
            results = finish(procs)
        finally:
            daemon.ensure_stopped()
        told = []
        for (status, err), path in zip(results, files, strict=True):
            assert status == 0, err
            [warning] = warnings(err)
            told.append(f"unavailable: the daemon on {w.socket} is stopping;" in warning)
            assert f"; limiting {R} to its share, " in warning
            assert f" of {LIMIT} per 2s (diophantine), locally until it is back" in warning
            assert max(stamps(path)) > stopped + 1.0  # it kept going without the daemon
        assert any(told)  # those that were waiting (the others found it gone)


def test_sigterm_stops_a_fail_closed_client_as_a_crash_would(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        configure(w)
        daemon = w.daemon(LIMITS).start()
        try:
            [proc], [path] = start_clients(
                w, 1, "20s", "--no-daemon-auto-start", "--daemon-fail-mode", "closed"
            )
            wait_for(lambda: len(stamps(path)) >= 2, what="a first run")
            daemon.stop(signal.SIGTERM)
            [(status, err)] = finish([proc])
        finally:
            daemon.ensure_stopped()
        assert status == 1, err
        last = err.splitlines()[-1]  # "is stopping" when it was waiting, else cannot connect
        assert last.startswith("rpr: patience-daemon unavailable: ")
        assert "the fail mode is closed" in last


# --- the grants of the last window survive a restart --------------------------------------------


SLOW = f'[rate_limiting.resources]\n"{R}" = {{ limit = {LIMIT}, window = "20s" }}\n'


def test_a_restart_keeps_the_grants_of_the_last_window() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory, SLOW).start()
        try:
            with daemon.client() as client:
                assert all(client.acquire(R).granted for _ in range(LIMIT))
            daemon.stop(signal.SIGTERM)
            state = Path(daemon.socket + ".state")
            assert state.stat().st_mode & 0o777 == 0o600
            saved = json.loads(state.read_text())
            [resource] = saved["resources"]
            assert (resource["id"], resource["window"], len(resource["grants"])) == (R, 20.0, 5)
            daemon.start()
            assert not state.exists()  # read once, then gone
            with daemon.client() as client:
                grant = client.acquire(R)
            assert not grant.granted
            assert 10.0 < grant.retry_after <= 20.0
            assert "restored the recent grants of 1 resources" in daemon.log_text()
        finally:
            daemon.ensure_stopped()


def test_an_untrustworthy_state_file_is_set_aside() -> None:
    """A corrupt file, or a symbolic link someone placed there, is never read as state: the
    daemon says so, moves it aside and starts afresh."""
    with short_dir() as directory:
        daemon = Daemon(directory, SLOW)
        (directory / "run").mkdir(mode=0o700)
        state = Path(daemon.socket + ".state")
        for bad in ("corrupt", "link"):
            target = directory / "elsewhere.json"
            target.write_text(json.dumps({"version": 1, "saved_at": 0, "resources": []}))
            if bad == "corrupt":
                state.write_text('{"version": 1, "resources": [')
                state.chmod(0o600)
            else:
                state.symlink_to(target)
            daemon.start()
            try:
                with daemon.client() as client:
                    assert client.acquire(R).granted
            finally:
                daemon.stop(signal.SIGKILL)
            assert (
                f"ignored the state file {state} (moved to {state}.rejected)" in daemon.log_text()
            )
            assert Path(f"{state}.rejected").is_symlink() == (bad == "link")
            assert not state.exists()
            assert json.loads(target.read_text())["resources"] == []  # not written through


def test_reported_grants_count_at_the_daemon() -> None:
    with running(SLOW) as daemon:
        now = time.time()
        with daemon.client(client_id="a") as a:
            times = [now - 1.0 - 0.1 * i for i in range(7)] + [now - 60.0]
            assert a.report_grants(R, times) == LIMIT  # the newest five of the window
            assert a.report_grants(R, [now - 1.0]) == 1  # a's account replaces its first
        with daemon.client(client_id="b") as b:
            assert b.report_grants(R, [now - 1.0] * 3) == 3
            assert b.acquire(R).granted  # 1 + 3 + this one
            assert not b.acquire(R).granted
        with daemon.raw() as raw:
            raw.ask('{"type":"handshake","versions":["2.0"],"client_id":"c","tool":"repeater"}')
            reply = raw.ask(f'{{"type":"report_grants","resource_id":"{R}","times":[-1]}}')
            assert reply["type"] == "error"
            assert "invalid report grants format" in str(reply["error"])
            assert "$.times[0]" in str(reply["error"])
            too_many = json.dumps(
                {"type": "report_grants", "resource_id": R, "times": [1] * 10_001}
            )
            assert "$.times" in str(raw.ask(too_many)["error"])
            short = raw.ask(
                f'{{"type":"report_grants","resource_id":"{R}","times":[],"limit":1,"window":1e-4}}'
            )
            assert "window: rate-limit window 100us is under 1ms" in str(short["error"])


def test_the_window_after_a_restart_is_honoured(tmp_path: Path) -> None:
    """Two clients keep one resource busy; the daemon restarts under them. Counted from the
    commands' own timestamps, no window from the restart on holds more than the limit: during
    the restart, and for one window after it, each keeps to its share, and the new daemon knows
    the grants made before (its state file, their reports). Before, the new daemon handed out
    a fresh window at once on top of the old one."""
    with world(tmp_path) as w:
        configure(w)
        daemon = w.daemon(LIMITS).start()
        try:
            procs, files = start_clients(w, 2, "10s", "--no-daemon-auto-start")
            wait_for(lambda: sum(len(stamps(f)) for f in files) >= 3 * LIMIT, what="runs")
            stopped = time.time()
            daemon.stop(signal.SIGTERM)
            daemon.start()
            results = finish(procs)
        finally:
            daemon.ensure_stopped()
        for status, err in results:
            assert status == 0, err
            # A client that met the restart says so, and that the daemon is back; one whose
            # asks all fell outside it (a fast restart) crossed it silently, as it should.
            if "patience-daemon unavailable" in err:
                assert any("is back" in line for line in err.splitlines()), err
        starts = sorted(t for path in files for t in stamps(path))
        after = [t for t in starts if t >= stopped]
        assert max(starts) > stopped + 2 * WINDOW  # they went on through the new daemon
        assert most_in_window(after, SPAN) <= LIMIT, after
        assert most_in_window(starts, SPAN) <= 2 * LIMIT  # with what was granted just before


# --- fail open: each client keeps to its share ---------------------------------------------------


def test_fail_open_clients_keep_together_within_the_sum_of_their_shares(tmp_path: Path) -> None:
    """Four clients, the daemon gone: each keeps to its share (5 per 2s among four: 2, 1, 1, 1),
    so together they stay within the limit, where each used to take the whole of it."""
    with world(tmp_path) as w:
        configure(w)
        daemon = w.daemon(LIMITS).start()
        try:
            procs, files = start_clients(w, 4, "10s", "--no-daemon-auto-start")
            wait_for(lambda: sum(len(stamps(f)) for f in files) >= 2 * LIMIT, what="runs")
            killed = time.time()
            daemon.stop(signal.SIGKILL)
            results = finish(procs)
        finally:
            daemon.ensure_stopped()
        for status, err in results:
            assert status == 0, err
        starts = sorted(t for path in files for t in stamps(path))
        outage = [t for t in starts if t >= killed + WINDOW]
        assert max(starts) > killed + 2.5 * WINDOW
        assert most_in_window(outage, SPAN) <= LIMIT, outage  # the sum of the shares
        assert most_in_window(starts, SPAN) <= 2 * LIMIT  # plus what was granted just before


def test_the_fallback_is_chosen_per_resource(tmp_path: Path) -> None:
    """`fallback` in a resource's entry: "closed" stops the tool while the daemon is away; the
    command line's --daemon-fail-mode wins ("open", its first spelling, is the share); a bad
    value is an error naming the file and key."""
    with world(tmp_path) as w:
        configure(w)
        config = w.home / "config" / "patience" / "config.toml"
        entry = f'"{R}" = {{ limit = {LIMIT}, window = "2s", fallback = "closed" }}'
        config.write_text(f"[rate_limiting.resources]\n{entry}\n")
        run = ["count", "--times", "2", "--no-daemon-auto-start", *w.daemon_flags(R)]
        closed = w.rpr(*run, "--", "true")
        assert closed.returncode == 1, closed.stderr
        assert "the fail mode is closed" in closed.stderr
        shared = w.rpr(*run, "--daemon-fail-mode", "open", "--", "true")
        assert shared.returncode == 0, shared.stderr
        [warning] = warnings(shared.stderr)
        assert f"limiting {R} to {LIMIT} per 2s (diophantine) locally" in warning  # no share yet
        config.write_text(f"[rate_limiting.resources]\n{entry.replace('closed', 'halfway')}\n")
        bad = w.rpr(*run, "--", "true")
        assert bad.returncode == 2
        assert f"{config}: " in bad.stderr
        assert '.fallback: expected one of share, full, closed, got "halfway"' in bad.stderr


# --- back at once -------------------------------------------------------------------------------


def test_a_daemon_that_is_back_is_used_again_at_once(tmp_path: Path) -> None:
    """After a long outage the reconnection thread has backed off for seconds; a daemon that
    comes back (restarted by systemd, or started by another tool) is used from the client's
    next start, not from the thread's next attempt (before: 3 to 4 s later here)."""
    with world(tmp_path) as w:
        configure(w)
        daemon = w.daemon(LIMITS).start()
        try:
            [proc], [path] = start_clients(w, 1, "30s", "--no-daemon-auto-start")
            wait_for(lambda: len(stamps(path)) >= 2, what="a first run")
            daemon.stop(signal.SIGKILL)
            time.sleep(9.0)  # the thread's attempts, doubling, are now 4 s apart
            daemon.start()
            back = time.monotonic()

            def granted() -> bool:
                with daemon.client() as client:
                    state = client.resource_state(R)
                return bool(state) and state[0]["tokens_granted"] != 0

            wait_for(granted, timeout=20.0, what="a grant by the daemon that is back")
            delay = time.monotonic() - back
            proc.send_signal(signal.SIGINT)
            finish([proc])
        finally:
            daemon.ensure_stopped()
        assert delay < 1.0, f"back after {delay:.2f}s"


# --- the fault test ---------------------------------------------------------------------------


def test_restart_and_kill_under_four_clients_keep_the_limit(tmp_path: Path) -> None:
    """Four clients auto-starting the daemon, 20 s at a run every 100 ms on a resource limited
    to 5 per 2 s; the daemon is restarted (SIGTERM) at 8 s and killed (SIGKILL) at 14 s. No
    client stops early, and no window holds more than the documented allowance: the limit plus
    the sum of the shares (docs/multi-host.md), twice the limit."""
    with world(tmp_path) as w:
        configure(w)
        pid_file = Path(w.socket + ".pid")
        began, launched = time.monotonic(), time.time()
        procs, files = start_clients(w, 4, "20s")
        try:
            wait_for(pid_file.exists, what="the auto-started daemon")
            first = int(pid_file.read_text())
            time.sleep(max(0.0, began + 8.0 - time.monotonic()))
            restarted = time.time()
            os.kill(first, signal.SIGTERM)
            wait_for(lambda: _pid(pid_file) not in (None, first), what="a new daemon")
            second = _pid(pid_file)
            assert second is not None
            time.sleep(max(0.0, began + 14.0 - time.monotonic()))
            killed = time.time()
            os.kill(second, signal.SIGKILL)
            results = finish(procs)
            wait_for(lambda: _pid(pid_file) not in (None, second), what="a third daemon")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
            _stop(pid_file)
        for status, err in results:
            assert status == 0, err
        per_client = [stamps(path) for path in files]
        starts = sorted(t for times in per_client for t in times)
        # Each ran on to its end: rpr stops once its next token would come after --for, so
        # its last start is within the last window before its deadline (at 4 clients, a token
        # each 1.6 s). Each client's 20 s count from its own start, at or after `launched`,
        # while windows open every 2 s from the first grant, which waits for the daemon's
        # auto-start: so the last window that opens before a deadline opens after launched +
        # 18 s (less the 0.1 s of noise SPAN allows). Counted from the first start instead,
        # a slow auto-start (over 2 s on a loaded machine) moves a deadline before the 18 s
        # boundary, and a client that did run to its end seemed to stop a window early.
        assert all(max(times) > launched + 20.0 - WINDOW - 0.1 for times in per_client)
        worst = most_in_window(starts, SPAN)
        print(  # the measured numbers, for the record (pytest -s)
            f"starts {len(starts)}; most in any 2s window {worst} (limit {LIMIT});"
            f" per client {[len(t) for t in per_client]}; restart at"
            f" {restarted - starts[0]:.2f}s, kill at {killed - starts[0]:.2f}s"
        )
        assert worst <= 2 * LIMIT
        log = (w.home / "state" / "patience" / "daemon.log").read_text()
        assert "restored the recent grants of 1 resources" in log  # the SIGTERM's state file
        assert len(starts) >= 20 * LIMIT / WINDOW * 0.8  # the limit was used, not starved


def _pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def _stop(pid_file: Path) -> None:
    pid = _pid(pid_file)
    if pid is None:
        return
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not pid_alive(pid), what="the daemon to stop")
