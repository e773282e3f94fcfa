"""Alerts through a real daemon, real rpr and patience processes and a real local webhook
receiver (docs/alerting.md): a missed schedule (rpr stopped with SIGSTOP, then SIGCONT; rpr
killed), degradation, exhaustion, coordination degraded (Redis stopped), throttling (from
synthetic events), each webhook message checked against Alertmanager's format; a receiver
that is down or slow delays nothing else; the command notifier; `patience alerts`."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alert_support import (
    ThrottledDaemon,
    alerts,
    check_alertmanager,
    free_port,
    receiver,
    wait_for,
)
from daemon_support import Daemon, short_dir
from integration_support import World, world
from redis_support import redis_server
from tools import PATIENCE, RPR

pytestmark = pytest.mark.slow

QUICK = 'missed_schedule_grace = "1s"\nmin_hold = "2s"\n'


def alerting(url: str, extra: str = "") -> str:
    return f'[alerting]\nwebhook = "{url}"\n{QUICK}{extra}'


@pytest.fixture
def w(tmp_path: Path) -> Iterator[World]:
    with world(tmp_path) as surroundings:
        yield surroundings


def started(w: World, config: str) -> Daemon:
    daemon = w.daemon(config)
    daemon.start()
    return daemon


def rpr_every(w: World, every: str, resource: str, *command: str) -> subprocess.Popen[str]:
    return w.start(RPR, "interval", "--every", every, *w.daemon_flags(resource), "--", *command)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
    proc.communicate(timeout=20)


def the_alert(daemon: Daemon, rule: str, everything: bool = False) -> dict[str, Any] | None:
    found = [a for a in alerts(daemon, everything)["alerts"] if a["rule"] == rule]
    return found[-1] if found else None


def checked(bodies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for body in bodies:
        check_alertmanager(body)
    return bodies


def test_missed_schedule_fires_on_sigstop_and_resolves_on_sigcont(w: World) -> None:
    with receiver() as hook:
        daemon = started(w, alerting(hook.url))
        job = rpr_every(w, "1s", "job:nightly", "true")
        try:
            time.sleep(2.5)  # a few runs on time
            assert hook.bodies == []
            job.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            wait_for(lambda: hook.statuses("missed_schedule") == ["firing"], 15, "firing")
            assert time.monotonic() - stopped >= 2.0  # its period (1s) and grace (1s) first
            firing = checked(hook.bodies)[0]["alerts"][0]
            assert firing["labels"]["resource"] == "job:nightly"
            assert firing["annotations"]["tools"] == "repeater"
            assert "started no run for" in firing["annotations"]["description"]
            shown = w.run(PATIENCE, "alerts", "--json", "--socket", w.socket)
            assert shown.returncode == 0, shown.stderr
            (line,) = [json.loads(x) for x in shown.stdout.splitlines()]
            assert line["rule"] == "missed_schedule" and line["status"] == "firing"
            assert line["ends_at"] is None and line["tools"] == ["repeater"]
            assert set(line) >= {
                "rule",
                "resource",
                "status",
                "starts_at",
                "ends_at",
                "tools",
                "clients",
            }
            job.send_signal(signal.SIGCONT)
            wait_for(
                lambda: hook.statuses("missed_schedule") == ["firing", "resolved"], 15, "resolved"
            )
            resolved = checked(hook.bodies)[1]["alerts"][0]
            assert resolved["fingerprint"] == firing["fingerprint"]
            assert resolved["endsAt"] > resolved["startsAt"]
            # rpr ended on purpose unregisters its schedule: its silence is no alert.
            stop(job, signal.SIGINT)
            assert job.returncode == 130
            time.sleep(4)
            assert hook.statuses("missed_schedule") == ["firing", "resolved"]
            table = w.run(RPR, "alerts", "--all", "--socket", w.socket)
            assert table.returncode == 0
            header, row = table.stdout.splitlines()
            assert header.split()[:4] == ["STATUS", "RULE", "RESOURCE", "SINCE"]
            assert row.split()[:3] == ["resolved", "missed_schedule", "job:nightly"]
        finally:
            stop(job)
            daemon.ensure_stopped()
        assert "alert firing: missed_schedule on job:nightly" in daemon.log_text()
        assert "alert resolved: missed_schedule on job:nightly" in daemon.log_text()


def test_a_cron_schedule_missed_fires_and_resolves(w: World) -> None:
    """A cron job is due again within the longest gap between its runs (here 2s)."""
    with receiver() as hook:
        daemon = started(w, alerting(hook.url))
        flags = w.daemon_flags("job:cron")
        job = w.start(RPR, "cron", "--cron", "*/2 * * * * *", *flags, "--", "true")
        try:
            time.sleep(3)
            with daemon.client() as client:
                (state,) = client.resource_state("job:cron")
            (used,) = state["active_clients"].values()  # type: ignore[union-attr]
            assert used["schedule"]["type"] == "cron" and used["schedule"]["interval"] == 2.0
            job.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            wait_for(lambda: hook.statuses("missed_schedule") == ["firing"], 15, "firing")
            assert time.monotonic() - stopped >= 2.0
            job.send_signal(signal.SIGCONT)
            wait_for(lambda: hook.statuses("missed_schedule") == ["firing", "resolved"], 15, "back")
            checked(hook.bodies)
        finally:
            stop(job)
            daemon.ensure_stopped()


def test_a_killed_rpr_is_a_missed_schedule_naming_its_lost_connection(w: World) -> None:
    with receiver() as hook:
        daemon = started(w, alerting(hook.url))
        job = rpr_every(w, "1s", "job:killed", "true")
        try:
            time.sleep(2)
            stop(job)
            wait_for(lambda: hook.statuses("missed_schedule") == ["firing"], 15, "firing")
            summary = the_alert(daemon, "missed_schedule")["summary"]  # type: ignore[index]
            assert "and has had no connection since" in summary
        finally:
            stop(job)
            daemon.ensure_stopped()


def test_degradation_when_the_command_starts_failing(w: World, tmp_path: Path) -> None:
    flag = tmp_path / "broken"
    extra = "degradation_min_runs = 5\nsuccess_rate_min = 0.5\n"
    with receiver() as hook:
        daemon = started(w, alerting(hook.url, extra))
        job = rpr_every(w, "200ms", "api:flaky", "sh", "-c", f"test ! -e {flag}")
        try:
            time.sleep(1.5)
            flag.touch()  # from now on every run fails
            wait_for(lambda: hook.statuses("degradation") == ["firing"], 40, "degradation")
            alert = checked(hook.bodies)[0]["alerts"][0]
            assert alert["labels"]["resource"] == "api:flaky"
            assert "success rate" in alert["annotations"]["description"]
            assert "below 50%" in alert["annotations"]["description"]
        finally:
            stop(job)
            daemon.ensure_stopped()


def test_exhaustion_of_a_full_limit_lists_both_tools(w: World) -> None:
    config = '[rate_limiting.resources]\n"api:full" = { limit = 3, window = "30s" }\n' + alerting(
        "http://127.0.0.1:1/unused", 'exhaustion_for = "1s"\n'
    )
    with receiver() as hook:
        daemon = started(w, config.replace("http://127.0.0.1:1/unused", hook.url))
        job = rpr_every(w, "200ms", "api:full", "true")
        retry = w.start(PATIENCE, "fixed", "--attempts", "5", "--delay", "100ms",
                        *w.daemon_flags("api:full"), "--", "false")  # fmt: skip
        try:
            wait_for(lambda: hook.statuses("exhaustion") == ["firing"], 20, "exhaustion")
            alert = checked(hook.bodies)[0]["alerts"][0]
            assert "100% of its limit (3 per 30s) in use" in alert["annotations"]["description"]
            wait_for(
                lambda: the_alert(daemon, "exhaustion")["tools"] == ["patience", "repeater"],  # type: ignore[index]
                10,
                "both tools",
            )
        finally:
            stop(job)
            stop(retry)
            daemon.ensure_stopped()


def test_coordination_degraded_while_redis_is_stopped(w: World) -> None:
    with short_dir() as directory, redis_server(directory) as server, receiver() as hook:
        backend = f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\n'
        daemon = started(w, backend + alerting(hook.url))
        try:
            time.sleep(1.5)
            assert hook.bodies == []
            server.stop()
            wait_for(lambda: hook.statuses("coordination") == ["firing"], 20, "firing")
            alert = checked(hook.bodies)[0]["alerts"][0]
            assert alert["labels"]["resource"] == "backend:redis"
            assert f"Redis at {server.url} unreachable" in alert["annotations"]["description"]
            server.start()
            wait_for(lambda: hook.statuses("coordination") == ["firing", "resolved"], 20, "back")
            checked(hook.bodies)
        finally:
            daemon.ensure_stopped()


def throttled_daemon(directory: Path, config: str) -> Daemon:
    events = [("api:busy", "repeater", "rpr-1"), ("api:busy", "patience", "pat-2"),
              ("api:busy", "repeater", "rpr-3")]  # fmt: skip
    daemon = ThrottledDaemon(directory, config, events)
    daemon.start()
    return daemon


def test_throttled_from_synthetic_events_through_webhook_and_command(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    command = json.dumps(["sh", "-c", f"cat >> {out}"])
    with short_dir() as directory, receiver() as hook:
        config = alerting(hook.url, f'throttle_window = "3s"\ncommand = {command}\n')
        daemon = throttled_daemon(directory, config)
        try:
            wait_for(lambda: hook.statuses("throttled") == ["firing", "resolved"], 20, "both")
            firing = checked(hook.bodies)[0]
            assert firing["commonLabels"]["resource"] == "api:busy"
            assert firing["commonAnnotations"]["tools"] == "patience, repeater"
            assert firing["commonAnnotations"]["clients"] == "pat-2, rpr-1, rpr-3"
            wait_for(lambda: out.exists() and len(out.read_text().splitlines()) == 2, 10, "cmd")
            sent = [json.loads(line) for line in out.read_text().splitlines()]
            assert [a["status"] for a in sent] == ["firing", "resolved"]
            assert sent[0]["rule"] == "throttled" and sent[0]["clients"] == [
                "pat-2",
                "rpr-1",
                "rpr-3",
            ]
            assert sent[1]["ends_at"] >= sent[1]["starts_at"] + 2  # min_hold

            # The command has written its line before it exits, and is counted when it has.
            def stats() -> dict[str, dict[str, int]]:
                return {n["notifier"]: n for n in alerts(daemon)["notifiers"]}

            wait_for(lambda: stats()["command"]["sent"] == 2, 10, "the command counted")
            assert stats()["webhook"]["sent"] == 2 and stats()["webhook"]["failures"] == 0
        finally:
            daemon.ensure_stopped()


def ping_times(daemon: Daemon, seconds: float) -> list[float]:
    times = []
    with daemon.raw() as raw:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            start = time.monotonic()
            assert raw.ask('{"type":"ping"}')["type"] == "pong"
            times.append(time.monotonic() - start)
            time.sleep(0.02)
    return times


def test_a_down_receiver_is_retried_counted_and_delays_nothing(tmp_path: Path) -> None:
    port = free_port()
    with short_dir() as directory:
        daemon = throttled_daemon(directory, alerting(f"http://127.0.0.1:{port}/hook"))
        try:
            wait_for(lambda: alerts(daemon)["notifiers"][0]["failures"] >= 2, 20, "failures")
            assert max(ping_times(daemon, 1.0)) < 0.25
            stats = alerts(daemon)["notifiers"][0]
            assert stats["notifier"] == "webhook" and stats["sent"] == 0
            assert "cannot connect" in stats["last_error"]
            shown = subprocess.run(
                [PATIENCE, "alerts", "--socket", daemon.socket],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert shown.returncode == 0
            assert "notifier webhook:" in shown.stderr and "failed tries" in shown.stderr
            with receiver(port) as hook:  # the receiver comes back: the retry delivers
                wait_for(lambda: "firing" in hook.statuses("throttled"), 30, "delivery")
                checked(hook.bodies)
        finally:
            daemon.ensure_stopped()
        assert "alerts: webhook: try 1 of 10 failed: http://127.0.0.1:" in daemon.log_text()


def test_a_slow_receiver_delays_nothing_else(tmp_path: Path) -> None:
    with short_dir() as directory, receiver() as hook:
        hook.delay = 3.0
        daemon = throttled_daemon(directory, alerting(hook.url))
        try:
            times = ping_times(daemon, 4.0)  # while the receiver holds the notification
            assert max(times) < 0.25, max(times)
            wait_for(lambda: hook.statuses("throttled")[:1] == ["firing"], 20, "delivery")
        finally:
            daemon.ensure_stopped()


# ---- the command line and the protocol --------------------------------------------------------


def test_alerts_without_a_daemon_is_exit_1_naming_the_socket(w: World) -> None:
    for tool in (PATIENCE, RPR):
        shown = w.run(tool, "alerts", "--socket", w.socket)
        assert shown.returncode == 1
        assert f"alerts: no daemon answers on {w.socket}" in shown.stderr
        assert "start one with patience-daemon" in shown.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bogus"], "--bogus"),
        (["extra"], "unexpected argument 'extra' (see patience alerts --help)"),
        (["--socket", ""], "--socket: must not be empty"),
    ],
)
def test_bad_options_exit_2(w: World, args: list[str], message: str) -> None:
    shown = w.run(PATIENCE, "alerts", *args)
    assert shown.returncode == 2 and message in shown.stderr and shown.stdout == ""


def test_help_and_no_alerts(w: World) -> None:
    shown = w.run(RPR, "alerts", "--help")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: rpr alerts [--all]")
    daemon = started(w, "")
    try:
        empty = w.run(PATIENCE, "alerts", "--socket", w.socket)
        assert (empty.returncode, empty.stdout) == (0, "")
        assert "patience alerts: no pending or firing alerts" in empty.stderr
        with daemon.raw() as raw:
            bad = raw.ask('{"type":"alerts","everything":true}')
            assert (
                bad["error"] == "invalid alerts format: Object contains unknown field `everything`"
            )
            bad = raw.ask('{"type":"unregister_schedule"}')
            assert "invalid unregister schedule format" in str(bad["error"])
    finally:
        daemon.ensure_stopped()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('webhook = "ftp://x"', "alerting.webhook: expected an http:// or https:// URL"),
        ("command = []", "alerting.command: expected a command as a list of strings"),
        (
            "exhaustion_utilisation = 1.5",
            "alerting.exhaustion_utilisation: expected a number from 0 to 1, got 1.5",
        ),
        ('min_hold = "soon"', "alerting.min_hold: expected a duration"),
        (
            '[alerting.resources."api:*"]\nthrottle_count = 0',
            'alerting.resources."api:*".throttle_count: expected a whole number, 1 or more, got 0',
        ),
    ],
)
def test_a_bad_alerting_value_stops_the_daemon_naming_it(w: World, line: str, message: str) -> None:
    daemon = w.daemon(f"[alerting]\n{line}\n")
    daemon.start(wait=False)
    assert daemon.proc is not None
    assert daemon.proc.wait(20) == 2
    assert message in daemon.log_text()


def test_throttled_from_real_feedback_of_rpr_and_patience(w: World) -> None:
    """The throttled rule fed by the tools themselves: rpr and patience runs whose command
    exits with the user's --throttle-exit code send `feedback`; three signals within the
    window fire one alert naming both tools, delivered to the webhook."""
    with receiver() as hook:
        config = alerting(hook.url, 'throttle_window = "30s"\n')
        config += '[rate_limiting.resources]\n"api:busy" = { adaptive = false }\n'
        daemon = started(w, config)
        try:
            throttled = ["--throttle-exit", "7", *w.daemon_flags("api:busy"), "--", "sh", "-c", "exit 7"]  # fmt: skip
            rpr = w.start(RPR, "count", "--times", "2", *throttled)
            patience = w.start(PATIENCE, "fixed", "--delay", "10ms", "--attempts", "1", *throttled)
            for proc in (rpr, patience):
                proc.communicate(timeout=60)
            wait_for(lambda: hook.statuses("throttled") == ["firing"], 20, "the throttled alert")
            firing = checked(hook.bodies)[0]
            assert firing["commonLabels"]["resource"] == "api:busy"
            assert firing["commonAnnotations"]["tools"] == "patience, repeater"
            alert = the_alert(daemon, "throttled")
            assert alert is not None and alert["status"] == "firing"
            assert sorted(alert["tools"]) == ["patience", "repeater"]
        finally:
            daemon.ensure_stopped()
