"""The daemon process's life: one per socket, stale sockets replaced, graceful stop with clients
connected, configuration reload on SIGHUP, systemd notification, and acknowledged metrics that
survive kill -9."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest

from daemon_support import DAEMON, Daemon, isolated_env, run_daemon, running, short_dir
from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable


def record(n: int) -> dict[str, object]:
    return {
        "tool": "repeater",
        "resource_id": "durable",
        "start_time": 1_800_000_000.0 + n,
        "duration": 0.25,
        "success": n % 2 == 0,
        "execution_number": n,
    }


def test_socket_and_files_are_private() -> None:
    with running() as daemon:
        mode = os.stat(daemon.socket).st_mode
        assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600
        assert stat.S_IMODE(os.stat(Path(daemon.socket).parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(daemon.db).st_mode) == 0o600
        assert Path(daemon.socket + ".pid").read_text().strip() == str(daemon.proc.pid)  # type: ignore[union-attr]


def test_a_second_daemon_on_the_same_socket_says_who_holds_it() -> None:
    with running() as daemon:
        second = run_daemon(daemon.dir, *daemon.command()[1:])
        assert second.returncode == 1
        pid = daemon.proc.pid  # type: ignore[union-attr]
        assert second.stderr.strip() == (
            f"patience-daemon: another patience-daemon (pid {pid}) already serves"
            f" {daemon.socket} (stop it with: patience-daemon stop)"
        )
        with daemon.client() as client:
            assert client.status()["pid"] == pid


def test_a_stale_socket_left_by_a_crash_is_replaced() -> None:
    with short_dir() as directory:
        first = Daemon(directory)
        try:
            first.start()
            first.stop(signal.SIGKILL)
            assert os.path.exists(first.socket)  # left behind
            second = Daemon(directory).start()
            with second.client() as client:
                assert client.status()["pid"] == second.proc.pid  # type: ignore[union-attr]
            assert "replaced a stale socket" in second.log_text()
            assert second.stop() == 0
        finally:
            first.ensure_stopped()


def test_a_regular_file_at_the_socket_path_is_not_deleted() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory)
        Path(daemon.socket).parent.mkdir(mode=0o700)
        Path(daemon.socket).write_text("precious")
        result = run_daemon(directory, *daemon.command()[1:])
        assert result.returncode == 1
        assert "exists and is not a socket" in result.stderr
        assert Path(daemon.socket).read_text() == "precious"


def test_a_socket_served_by_something_else_is_left_alone() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory)
        Path(daemon.socket).parent.mkdir(mode=0o700)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
            other.bind(daemon.socket)
            other.listen()
            result = run_daemon(directory, *daemon.command()[1:])
            assert result.returncode == 1
            assert "is served by a process that does not hold" in result.stderr
            assert os.path.exists(daemon.socket)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_graceful_stop_with_clients_connected(signum: int) -> None:
    config = '[rate_limiting.resources]\n"slow" = { limit = 1, window = "1m" }\n'
    with running(config) as daemon:
        holder = daemon.client("patience", "holder")
        assert holder.acquire("slow").granted
        assert holder.send_metrics([record(1), record(2)]) == 2
        idle = daemon.raw()
        waiting = daemon.raw()
        waiting.send('{"type":"acquire","resource_id":"slow","max_wait":100}\n')
        time.sleep(0.3)
        started = time.monotonic()
        assert daemon.stop(signum) == 0
        assert time.monotonic() - started < 5.0
        # The waiting request is answered, the idle connection closed.
        reply = waiting.line()
        assert b"the daemon is stopping" in reply
        assert idle.line() == b""
        assert not os.path.exists(daemon.socket)
        assert not os.path.exists(daemon.socket + ".pid")
        with pytest.raises(DaemonUnavailable):
            holder.acquire("slow")
        holder.close()
        idle.close()
        waiting.close()
        # Flushed and intact for the next start.
        daemon.start()
        with daemon.client() as client:
            [row] = client.query("resource_summary", resource_id="durable")
        assert row["total_executions"] == 2


def test_acknowledged_metrics_survive_kill_9() -> None:
    with running() as daemon:
        acknowledged = 0
        with daemon.client() as client:
            for batch in range(20):
                acknowledged += client.send_metrics([record(batch * 10 + i) for i in range(10)])
        daemon.stop(signal.SIGKILL)
        daemon.start()
        with daemon.client() as client:
            [row] = client.query("resource_summary", resource_id="durable")
    assert acknowledged == 200
    assert row["total_executions"] == 200


def test_sighup_reloads_limits_and_keeps_recent_grants() -> None:
    one = '[rate_limiting.resources]\n"r" = { limit = 1, window = "1m" }\n'
    with running(one) as daemon, daemon.client() as client:
        assert client.acquire("r").granted
        refused = client.acquire("r")
        assert not refused.granted and refused.limit.count == 1
        daemon.write_config('[rate_limiting.resources]\n"r*" = { limit = 3, window = "1m" }\n')
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while "reloaded" not in daemon.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        grant = client.acquire("r")
        assert grant.granted and grant.limit.count == 3 and grant.limit_source == "config:r*"
        assert grant.remaining == 1  # the grant before the reload still counts


def test_a_bad_configuration_on_sighup_keeps_the_old_one() -> None:
    config = '[rate_limiting.resources]\n"r" = { limit = 2, window = "1m" }\n'
    with running(config) as daemon, daemon.client() as client:
        daemon.config.write_text('[rate_limiting.resources]\n"r" = { limit = "lots" }\n')
        os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
        deadline = time.monotonic() + 10
        while "reload failed" not in daemon.log_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "keeping the old configuration" in daemon.log_text()
        assert client.acquire("r").limit.count == 2


def sighup(daemon: Daemon, mark: str, count: int = 1) -> None:
    """Send SIGHUP and wait until the log says `mark` for the count-th time."""
    os.kill(daemon.proc.pid, signal.SIGHUP)  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while daemon.log_text().count(mark) < count:
        assert time.monotonic() < deadline, daemon.log_text()
        time.sleep(0.05)


def test_sighup_reads_every_source_again() -> None:
    with short_dir() as directory:
        (directory / "etc").mkdir()
        (directory / "etc" / "config.toml").write_text(
            '[rate_limiting.resources]\n"r" = { limit = 1, window = "1m" }\n'
        )
        daemon = Daemon(directory)
        try:
            daemon.start()
            with daemon.client() as client:
                assert client.acquire("r").limit.count == 1
                user = directory / "config" / "patience" / "config.toml"
                user.parent.mkdir(parents=True)
                user.write_text('[rate_limiting.resources]\n"r" = { limit = 3, window = "1m" }\n')
                sighup(daemon, "reloaded")
                assert f"reloaded {directory / 'etc' / 'config.toml'}, {user}, " in (
                    daemon.log_text()
                )
                grant = client.acquire("r")
                assert grant.granted and (grant.limit.count, grant.remaining) == (3, 1)
                (directory / ".patience.toml").write_text("[daemon]\nclient_ttl = -1\n")
                sighup(daemon, "reload failed")
                assert ".patience.toml: daemon.client_ttl: expected a duration" in (
                    daemon.log_text()
                )
                assert client.acquire("r").limit.count == 3
        finally:
            daemon.ensure_stopped()


def test_sighup_keeps_the_log_level_flag_and_says_what_waits_for_a_restart() -> None:
    with running('[daemon]\nlog_level = "debug"\n', args=("--log-level", "warning")) as daemon:
        daemon.write_config(f'[daemon]\nlog_level = "debug"\nstorage_path = "{daemon.dir}/x.db"\n')
        sighup(daemon, "daemon.storage_path changed: it takes effect at the next start")
        with daemon.client() as client:
            client.ping()  # the reload has finished
        assert "INFO" not in daemon.log_text() and "DEBUG" not in daemon.log_text()


def test_systemd_notification() -> None:
    with short_dir() as directory:
        notify_path = str(directory / "notify")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
            notify.bind(notify_path)
            notify.settimeout(20)
            daemon = Daemon(directory)
            try:
                daemon.start(env={"NOTIFY_SOCKET": notify_path}, wait=False)
                ready = notify.recv(4096).decode()
                assert ready.startswith("READY=1\n")
                assert f"MAINPID={daemon.proc.pid}" in ready  # type: ignore[union-attr]
                with daemon.client() as client:  # ready means serving
                    client.ping()
                daemon.stop()
                assert notify.recv(4096).decode().startswith("STOPPING=1\n")
            finally:
                daemon.ensure_stopped()


def test_status_and_stop_commands() -> None:
    config = '[rate_limiting.resources]\n"api:*" = { limit = 5, window = "10s" }\n'
    with running(config) as daemon:
        with daemon.client("repeater", "rpr-7") as client:
            client.acquire("api:x")
            status = run_daemon(daemon.dir, "status", "--socket", daemon.socket)
        assert status.returncode == 0, status.stderr
        pid = daemon.proc.pid  # type: ignore[union-attr]
        lines = status.stdout.splitlines()
        assert lines[0] == f"patience-daemon 0.1.0 (pid {pid}) on {daemon.socket}"
        assert lines[1].startswith("uptime ")
        assert "1 resources" in lines[1]
        assert lines[2] == (
            "  api:x: 5 per 10s (diophantine, config:api:*), 4 left, 0 waiting;"
            " 1 clients, 1 tokens granted"
        )
        stop = run_daemon(daemon.dir, "stop", "--socket", daemon.socket)
        assert stop.returncode == 0
        assert stop.stderr.strip() == f"patience-daemon: stopped pid {pid}"
        assert daemon.proc.wait(10) == 0  # type: ignore[union-attr]
        again = run_daemon(daemon.dir, "stop", "--socket", daemon.socket)
        assert again.returncode == 0
        assert "no daemon is running" in again.stderr
        missing = run_daemon(daemon.dir, "status", "--socket", daemon.socket)
        assert missing.returncode == 1
        assert f"no daemon answers on {daemon.socket}" in missing.stderr


def test_environment_chooses_the_socket() -> None:
    with short_dir() as directory:
        path = str(directory / "env.sock")
        env = {"PATIENCE_DAEMON_SOCKET": path}
        proc = subprocess.Popen(
            [DAEMON],
            env=isolated_env(directory, env),
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            deadline = time.monotonic() + 20
            while not os.path.exists(path):
                assert time.monotonic() < deadline and proc.poll() is None
                time.sleep(0.02)
            status = run_daemon(directory, "status", env=env)
            assert status.returncode == 0 and path in status.stdout
            # With no storage configured, metrics live beside the chosen socket.
            with DaemonClient(path, "repeater") as client:
                assert client.send_metrics([record(1)]) == 1
            assert (directory / "env.db").exists()
        finally:
            proc.terminate()
            proc.wait(20)


def test_metrics_disabled_are_refused_clearly() -> None:
    with running("[daemon]\nmetrics_enabled = false\n") as daemon, daemon.client() as client:
        with pytest.raises(DaemonError, match="metrics are disabled"):
            client.send_metrics([record(1)])
        assert client.acquire("anything").granted
