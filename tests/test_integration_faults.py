"""Graceful degradation with a real daemon: absent (one warning, the limit still exact
locally), killed mid-run and restarted (the tools go on, reconnect, no run lost or
doubled), started by several tools at once (one daemon), and the fail-closed mode."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from integration_support import (
    executions,
    json_runs,
    most_in_window,
    resource_states,
    wait_for,
    warnings,
    world,
)
from tools import PATIENCE, RPR, pid_alive

COUNT = 'echo x >> "$0"'  # one line per run, to count the runs that really happened


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


# --- daemon absent ---------------------------------------------------------------------------


def test_absent_daemon_one_warning_and_rate_still_exact(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        r = w.rpr(
            "rate-limit", "--rate", "3/1s", "--times", "7", "--json", "--no-daemon-auto-start",
            *w.daemon_flags("api:absent"), "--", "true",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        found = warnings(r.stderr)
        assert len(found) == 1, r.stderr
        assert found[0].startswith("rpr: warning: patience-daemon unavailable: cannot connect to")
        assert "limiting api:absent to 3 per 1s (diophantine) locally" in found[0]
        starts = [run["actual_start"] for run in json_runs(r.stdout)]
        assert len(starts) == 7
        assert most_in_window(starts, 0.98) == 3  # exactly the limit, never more
        assert max(starts) - min(starts) >= 2 * 0.98


def test_absent_daemon_configured_limit_enforced_locally(tmp_path: Path) -> None:
    """No --rate: the limit configured for the resource is the one kept locally."""
    with world(tmp_path) as w:
        config = w.home / "limits.toml"
        config.write_text('[rate_limiting.resources]\n"api:*" = { limit = 2, window = "1s" }\n')
        r = w.rpr(
            "--config", str(config), "count", "--times", "5", "--json",
            "--no-daemon-auto-start", *w.daemon_flags("api:conf"), "--", "true",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert len(warnings(r.stderr)) == 1, r.stderr
        starts = [run["actual_start"] for run in json_runs(r.stdout)]
        assert len(starts) == 5
        assert most_in_window(starts, 0.98) == 2
        assert max(starts) - min(starts) >= 2 * 0.98


def test_absent_daemon_patience_retries_as_usual(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with world(tmp_path) as w:
        r = w.patience(
            "fixed", "--attempts", "3", "--delay", "10ms", "--no-daemon-auto-start",
            *w.daemon_flags("api:p"), "--", "sh", "-c", COUNT + "; exit 3", str(runs),
        )  # fmt: skip
        assert r.returncode == 3, r.stderr
        assert lines(runs) == 3
        found = warnings(r.stderr)
        assert len(found) == 1 and found[0].startswith("patience: warning: patience-daemon"), (
            r.stderr
        )


# --- daemon killed mid-run and restarted ------------------------------------------------------


@pytest.mark.parametrize("tool", ["rpr", "patience"])
def test_daemon_killed_and_restarted_mid_run(tmp_path: Path, tool: str) -> None:
    runs = tmp_path / "runs"
    with world(tmp_path) as w:
        daemon = w.daemon()
        daemon.start()
        try:
            if tool == "rpr":
                argv = [RPR, "rate-limit", "--rate", "5/1s", "--times", "20", "--json"]
            else:
                argv = [PATIENCE, "fixed", "--attempts", "20", "--delay", "150ms"]
            proc = w.start(
                *argv, "--no-daemon-auto-start", *w.daemon_flags("api:k"),
                "--", "sh", "-c", COUNT + ("" if tool == "rpr" else "; exit 1"), str(runs),
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 30
                while lines(runs) < 5 and time.monotonic() < deadline:
                    time.sleep(0.02)
                daemon.stop(signal.SIGKILL)
                during = lines(runs)
                time.sleep(1.2)
                assert lines(runs) > during  # the tool keeps going without the daemon
                daemon.start()
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            assert proc.returncode == (0 if tool == "rpr" else 1), err
            assert lines(runs) == 20  # no run lost, none doubled
            assert len(warnings(err)) == 1, err
            assert "patience-daemon unavailable" in warnings(err)[0]
            back = [line for line in err.splitlines() if "patience-daemon is back" in line]
            assert back == [
                f"{tool}: patience-daemon is back on {w.socket}; coordinating api:k through it"
                " again"
            ], err
            records = executions(daemon.db, "api:k")
            numbers = [
                rec["execution_number" if tool == "rpr" else "attempt_number"] for rec in records
            ]
            assert sorted(numbers) == list(range(1, 21))  # every record stored exactly once
            if tool == "rpr":
                starts = [run["actual_start"] for run in json_runs(out)]
                assert most_in_window(starts, 0.98) <= 5  # the limit held throughout
        finally:
            daemon.ensure_stopped()


def test_auto_start_brings_a_killed_daemon_back(tmp_path: Path) -> None:
    """With auto-start on, the background reconnection starts a new daemon itself."""
    runs = tmp_path / "runs"
    with world(tmp_path) as w:
        proc = w.start(
            RPR, "interval", "--every", "100ms", "--times", "30", *w.daemon_flags("api:auto"),
            "--", "sh", "-c", COUNT, str(runs),
        )  # fmt: skip
        pid_file = Path(w.socket + ".pid")
        try:
            deadline = time.monotonic() + 30
            while lines(runs) < 3 and time.monotonic() < deadline:
                time.sleep(0.02)
            first = int(pid_file.read_text())
            os.kill(first, signal.SIGKILL)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
            assert lines(runs) == 30
            assert any("is back" in line for line in err.splitlines()), err
            second = int(pid_file.read_text())
            assert second != first and pid_alive(second)
        finally:
            if proc.poll() is None:
                proc.kill()
            _stop_pid_file(pid_file)


# --- auto-start ------------------------------------------------------------------------------


def _stop_pid_file(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text())
    except (OSError, ValueError):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


def _daemons_serving(socket_path: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        daemon = any(b"patience-daemon" in a for a in argv)
        if daemon and socket_path.encode() in argv and pid_alive(int(entry)):
            found.append(int(entry))
    return found


def test_concurrent_auto_start_ends_with_one_daemon(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        pid_file = Path(w.socket + ".pid")
        try:
            flags = [*w.daemon_flags("api:race"), "--", "true"]
            procs = [w.start(RPR, "count", "--times", "3", *flags) for _ in range(3)]
            procs += [w.start(PATIENCE, "fixed", "--attempts", "1", *flags) for _ in range(2)]
            for proc in procs:
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 0, err
                assert not warnings(err), err
            # Losers of the start race may still be starting; each exits on finding the lock
            # taken, leaving the winner alone.
            wait_for(lambda: len(_daemons_serving(w.socket)) == 1, what="the losers to exit")
            assert _daemons_serving(w.socket) == [int(pid_file.read_text())]
            log = (w.home / "state" / "patience" / "daemon.log").read_text()
            assert f"serving {w.socket}" in log
            state = resource_states(w.daemon(), "api:race")[0]
            assert state["tokens_granted"] == 3 * 3 + 2
            assert state["clients_by_tool"] == {"repeater": 3, "patience": 2}
        finally:
            _stop_pid_file(pid_file)


def test_auto_start_that_cannot_work_falls_back_with_one_warning(tmp_path: Path) -> None:
    """A socket directory that belongs to nobody usable: the daemon cannot start; the tool
    says why once and runs on."""
    with world(tmp_path) as w:
        blocker = w.dir / "run"
        blocker.write_text("not a directory")
        r = w.rpr("count", "--times", "2", *w.daemon_flags("api:x"), "--", "true")
        assert r.returncode == 0, r.stderr
        found = warnings(r.stderr)
        assert len(found) == 1, r.stderr
        assert "patience-daemon did not start on" in found[0]
        assert "is not a directory" in found[0]


# --- fail-closed -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "config"])
@pytest.mark.parametrize("tool", ["rpr", "patience"])
def test_fail_closed_without_daemon_runs_nothing(tmp_path: Path, tool: str, how: str) -> None:
    runs = tmp_path / "runs"
    with world(tmp_path) as w:
        if how == "flag":
            mode = ["--daemon-fail-mode", "closed"]
        else:
            (w.home / ".patience.toml").write_text('[rate_limiting]\nfail_mode = "closed"\n')
            mode = []
        head = [RPR, "count", "--times", "3"] if tool == "rpr" else [PATIENCE, "fixed"]
        r = w.run(
            *head, *mode, "--no-daemon-auto-start", *w.daemon_flags("api:closed"),
            "--", "sh", "-c", COUNT, str(runs),
        )  # fmt: skip
        assert r.returncode == 1, r.stderr
        assert lines(runs) == 0
        assert not warnings(r.stderr), r.stderr
        errors = [line for line in r.stderr.splitlines() if "fail mode is closed" in line]
        assert len(errors) == 1, r.stderr
        assert errors[0].startswith(f"{tool}: patience-daemon unavailable: cannot connect to")
        assert f"start it with: patience-daemon --socket {w.socket}" in errors[0]


def test_fail_closed_stops_when_the_daemon_dies(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            proc = w.start(
                RPR, "interval", "--every", "100ms", "--times", "50", "--daemon-fail-mode",
                "closed", "--no-daemon-auto-start", *w.daemon_flags("api:dies"),
                "--", "sh", "-c", COUNT, str(runs),
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while lines(runs) < 5 and time.monotonic() < deadline:
                time.sleep(0.02)
            daemon.stop(signal.SIGKILL)
            _, err = proc.communicate(timeout=30)
            assert proc.returncode == 1, err
            assert 5 <= lines(runs) < 50
            assert err.splitlines()[-1].startswith("rpr: patience-daemon unavailable: ")
            assert "fail mode is closed" in err.splitlines()[-1]
        finally:
            daemon.ensure_stopped()


def test_auto_started_daemon_takes_the_log_level_and_leaves_the_cwd(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        pid_file = Path(w.socket + ".pid")
        w.env["RPR_LOG_LEVEL"] = "debug"
        try:
            r = w.rpr("count", "--times", "1", "-q", *w.daemon_flags("api:log"), "--", "true")
            assert r.returncode == 0, r.stderr
            [pid] = _daemons_serving(w.socket)
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert argv[argv.index(b"--log-level") + 1] == b"debug"
            assert os.readlink(f"/proc/{pid}/cwd") == "/"
        finally:
            _stop_pid_file(pid_file)
