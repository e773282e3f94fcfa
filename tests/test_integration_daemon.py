"""rpr and patience coordinated through a real patience-daemon: the seed's two integration
tests for real, global limits across instances, every patience strategy, the records both
tools store, and configuration that turns the daemon on."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from integration_support import (
    World,
    executions,
    json_runs,
    most_in_window,
    resource_states,
    warnings,
    world,
)
from tools import PATIENCE, RPR

# Fails on the first attempt of each rpr run and succeeds on the second: a counter file
# per run, named after RPR_ITERATION.
FLAKY = 'f="$0.$RPR_ITERATION"; n=$(($(cat "$f" 2>/dev/null || echo 0) + 1)); echo $n > "$f"; test $n -ge 2'


def test_rpr_with_patience_leaves_exactly_five_repeater_executions(tmp_path: Path) -> None:
    """The seed's TestRepeaterPatienceIntegration: `rpr interval --every 1s --times 5
    --daemon --resource-id test-resource -- patience exponential --attempts 3 -- CMD`."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            r = w.rpr(
                "interval", "--every", "1s", "--times", "5", *w.daemon_flags("test-resource"),
                "--", "patience", "exponential", "--attempts", "3", "--base-delay", "50ms",
                "--", "sh", "-c", FLAKY, str(tmp_path / "n"),
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert r.stderr.count("Command succeeded after 2 attempts") == 5
            with daemon.client() as client:
                summary = client.query("resource_summary", "test-resource", tools=["repeater"])
                state = client.resource_state("test-resource")[0]
            assert summary[0]["total_executions"] == 5
            assert summary[0]["successful_runs"] == 5
            assert state["tokens_granted"] == 5
            records = executions(daemon.db, "test-resource")
            assert [rec["execution_number"] for rec in records] == [1, 2, 3, 4, 5]
            assert {rec["tool"] for rec in records} == {"repeater"}
        finally:
            daemon.ensure_stopped()


def test_nested_patience_reports_its_attempts_under_its_own_resource(tmp_path: Path) -> None:
    """The seed's "health check with retry": rpr's runs and patience's attempts land in the
    same store, each tool under its own resource, attempts numbered within their run."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            r = w.rpr(
                "interval", "--every", "200ms", "--times", "3", *w.daemon_flags("health-check"),
                "--", "patience", "exponential", "--attempts", "3", "--base-delay", "20ms",
                *w.daemon_flags("health-retry"),
                "--", "sh", "-c", FLAKY, str(tmp_path / "n"),
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            with daemon.client() as client:
                tools = client.query("tool_comparison")
            by_tool = {row["tool"]: row for row in tools}
            assert by_tool["repeater"]["total_executions"] == 3
            assert by_tool["patience"]["total_executions"] == 6
            retries = executions(daemon.db, "health-retry")
            assert [rec["attempt_number"] for rec in retries] == [1, 2] * 3
            assert [rec["success"] for rec in retries] == [0, 1] * 3
            assert [rec["labels"]["rpr_execution"] for rec in retries] == [
                "1", "1", "2", "2", "3", "3",
            ]  # fmt: skip
            assert all(rec["labels"]["strategy"] == "exponential" for rec in retries)
            assert retries[0]["command"][:2] == ["sh", "-c"]
            runs = executions(daemon.db, "health-check")
            assert [rec["labels"] for rec in runs] == [{"mode": "interval"}] * 3
            assert [rec["exit_code"] for rec in runs] == [0, 0, 0]
            assert runs[0]["command"][0] == "patience"
        finally:
            daemon.ensure_stopped()


def _three_instances(
    w: World, config_window: str, every: str, window: float, timeout: float
) -> None:
    """The seed's TestMultiInstanceRateCoordination: three `rpr count --times 20` instances
    on one resource limited to 10 per window by the daemon's configuration."""
    daemon = w.daemon(
        f'[rate_limiting.resources]\n"test-api" = {{ limit = 10, window = "{config_window}" }}\n'
    )
    daemon.start()
    try:
        started = time.monotonic()
        argv = [RPR, "count", "--times", "20", "--every", every, "--json",
                *w.daemon_flags("test-api"), "--", "echo"]  # fmt: skip
        procs = [w.start(*argv, f"instance-{i}") for i in range(3)]
        outputs = [proc.communicate(timeout=timeout) for proc in procs]
        elapsed = time.monotonic() - started
        starts = []
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            assert not warnings(err), err
            runs = json_runs(out)
            assert len(runs) == 20  # every instance finished all its runs
            starts += [run["actual_start"] for run in runs]
        # At most 10 in any window (2% slack for the moment a process notes its start).
        assert most_in_window(starts, window * 0.98) <= 10
        first = min(starts)
        assert sum(1 for s in starts if s < first + window * 0.98) == 10
        # 60 runs at 10 per window: the last batch cannot start before 5 windows have passed.
        assert elapsed >= 5 * window * 0.98
        with daemon.client() as client:
            summary = client.query("resource_summary", "test-api", tools=["repeater"])
        assert summary[0]["total_executions"] == 60
    finally:
        daemon.ensure_stopped()


def test_three_instances_share_a_configured_limit_scaled(tmp_path: Path) -> None:
    """The same test with the window scaled down: 10 per 3s, a run every 100ms."""
    with world(tmp_path) as w:
        _three_instances(w, "3s", "100ms", 3.0, timeout=120)


@pytest.mark.slow
@pytest.mark.timeout(480)
def test_three_instances_share_a_configured_limit_of_10_per_minute(tmp_path: Path) -> None:
    """Faithful: 10 per minute, `--every 1s --times 20`, three instances (about 5 minutes)."""
    with world(tmp_path) as w:
        _three_instances(w, "1m", "1s", 60.0, timeout=420)


def test_rate_limit_is_global_across_instances_with_daemon(tmp_path: Path) -> None:
    """`rpr rate-limit --rate 5/2s --daemon`: the declared limit holds across both instances
    (without the daemon each would start 5 per 2s on its own)."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            started = time.monotonic()
            argv = [RPR, "rate-limit", "--rate", "5/2s", "--times", "8", "--json",
                    *w.daemon_flags("api:shared"), "--", "true"]  # fmt: skip
            procs = [w.start(*argv) for _ in range(2)]
            outputs = [proc.communicate(timeout=60) for proc in procs]
            elapsed = time.monotonic() - started
            starts = []
            for proc, (out, err) in zip(procs, outputs, strict=True):
                assert proc.returncode == 0, err
                starts += [run["actual_start"] for run in json_runs(out)]
            assert len(starts) == 16
            assert most_in_window(starts, 2.0 * 0.98) <= 5
            assert elapsed >= 3 * 2.0 * 0.98  # 16 starts at 5 per 2s: three full windows
            state = resource_states(daemon, "api:shared")[0]
            assert state["rate_limit"]["limit"] == 5
            assert state["rate_limit"]["source"].startswith("client:")
        finally:
            daemon.ensure_stopped()


def test_diophantine_daemon_limit_holds_across_instances(tmp_path: Path) -> None:
    """`patience diophantine --daemon`: attempts of two instances share one rate limit."""
    stamps = tmp_path / "stamps"
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            argv = [
                PATIENCE, "diophantine", "--rate-limit", "3", "--window", "2s",
                "--retry-offsets", "0,0,0,0", *w.daemon_flags("api:dio"),
                "--", "sh", "-c", 'date +%s.%N >> "$0"; exit 1', str(stamps),
            ]  # fmt: skip
            procs = [w.start(*argv) for _ in range(2)]
            for proc in procs:
                _, err = proc.communicate(timeout=60)
                assert proc.returncode == 1, err
                assert "Command failed after 4 attempts" in err
            starts = [float(line) for line in stamps.read_text().split()]
            assert len(starts) == 8
            assert most_in_window(starts, 2.0 * 0.98) <= 3
            assert max(starts) - min(starts) >= 2 * 2.0 * 0.98
        finally:
            daemon.ensure_stopped()


STRATEGIES = {
    "http-aware": ["--base-delay", "10ms"],
    "exponential": ["--base-delay", "10ms"],
    "linear": ["--increment", "10ms"],
    "fixed": ["--delay", "10ms"],
    "jitter": ["--base-delay", "10ms"],
    "decorrelated-jitter": ["--base-delay", "10ms"],
    "fibonacci": ["--base-delay", "10ms"],
    "polynomial": ["--base-delay", "10ms"],
    "adaptive": ["--base-delay", "10ms"],
    "diophantine": ["--retry-offsets", "0,10ms", "--rate-limit", "10", "--window", "1s"],
}


def test_every_strategy_takes_a_token_and_reports_each_attempt(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            for name, options in STRATEGIES.items():
                r = w.patience(
                    name, "--attempts", "2", *options, *w.daemon_flags(f"strategy:{name}"),
                    "--", "false",
                )  # fmt: skip
                assert r.returncode == 1, (name, r.stderr)
                assert not warnings(r.stderr), (name, r.stderr)
            states = {s["id"]: s for s in resource_states(daemon)}
            for name in STRATEGIES:
                assert states[f"strategy:{name}"]["tokens_granted"] == 2, name
                records = executions(daemon.db, f"strategy:{name}")
                assert [rec["attempt_number"] for rec in records] == [1, 2], name
                assert [rec["exit_code"] for rec in records] == [1, 1], name
                assert {rec["tool"] for rec in records} == {"patience"}, name
        finally:
            daemon.ensure_stopped()


def test_attempt_waits_for_the_daemons_token(tmp_path: Path) -> None:
    """A patience attempt does not start before the daemon grants its token: with the
    resource's one token per 2s just taken, the first attempt waits about 2s."""
    with world(tmp_path) as w:
        daemon = w.daemon('[rate_limiting.resources]\n"slow" = { limit = 1, window = "2s" }\n')
        daemon.start()
        try:
            with daemon.client() as client:
                assert client.acquire("slow").granted
            started = time.monotonic()
            r = w.patience("fixed", "--attempts", "1", *w.daemon_flags("slow"), "--", "true")
            assert r.returncode == 0, r.stderr
            assert 1.8 <= time.monotonic() - started < 10
        finally:
            daemon.ensure_stopped()


# --- resource detection --------------------------------------------------------------------


def _fake_programs(directory: Path, *names: str) -> str:
    """Programs named like curl, psql and ssh that only succeed: detection reads the command
    line, and the test must not touch the network."""
    directory.mkdir()
    for name in names:
        program = directory / name
        program.write_text("#!/bin/sh\nexit 0\n")
        program.chmod(0o755)
    return str(directory)


@pytest.mark.parametrize(
    ("command", "resource_id"),
    [
        (["curl", "-fsS", "-H", "Accept: x", "https://api.example.com/v1/x"],
         "api:external:api.example.com"),
        (["psql", "-h", "db.internal", "-d", "user_db", "-c", "select 1"],
         "database:postgres:user_db"),
        (["ssh", "-p", "2222", "deploy@10.0.0.7", "uptime"], "network:tcp:10.0.0.7:2222"),
        (["true"], "command:local:true"),
    ],
)  # fmt: skip
def test_rpr_detects_the_resource_through_patience(
    tmp_path: Path, command: list[str], resource_id: str
) -> None:
    with world(tmp_path) as w:
        w.env["PATH"] = (
            _fake_programs(tmp_path / "bin", "curl", "psql", "ssh") + ":" + w.env["PATH"]
        )
        daemon = w.daemon().start()
        try:
            r = w.rpr(
                "count", "--times", "2", *w.daemon_flags(),
                "--", "patience", "fixed", "--attempts", "2", *w.daemon_flags(), "--", *command,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            records = executions(daemon.db, resource_id)
            assert sorted(rec["tool"] for rec in records) == ["patience"] * 2 + ["repeater"] * 2
        finally:
            daemon.ensure_stopped()


def test_resource_id_beats_detection_and_detection_can_be_off(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            w.env["PATH"] = _fake_programs(tmp_path / "bin", "curl") + ":" + w.env["PATH"]
            url = "https://api.example.com/"
            r = w.rpr("count", "--times", "1", *w.daemon_flags("mine"), "--", "curl", url)
            assert r.returncode == 0, r.stderr
            (w.home / "off.toml").write_text("[repeater]\nresource_detection = false\n")
            flags = ["--config", str(w.home / "off.toml"), "count", "--times", "1"]
            r = w.rpr(*flags, *w.daemon_flags(), "--", "patience", "fixed", "--", "curl", url)
            assert r.returncode == 0, r.stderr
            ids = {s["id"] for s in resource_states(daemon)}
            assert ids == {"mine", "command:local:patience"}
        finally:
            daemon.ensure_stopped()


# --- configuration ---------------------------------------------------------------------------


def test_environment_turns_the_daemon_on_for_each_tool(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            w.env.update(RPR_DAEMON_ENABLED="true", RPR_DAEMON_SOCKET=w.socket)
            w.env.update(PATIENCE_DAEMON_ENABLED="1", PATIENCE_DAEMON_SOCKET=w.socket)
            assert w.rpr("count", "--times", "2", "--", "true").returncode == 0
            assert w.patience("fixed", "--attempts", "1", "--", "true").returncode == 0
            assert w.rpr("count", "--times", "3", "--no-daemon", "--", "true").returncode == 0
            with daemon.client() as client:
                rows = {row["tool"]: row for row in client.query("tool_comparison")}
            assert rows["repeater"]["total_executions"] == 2
            assert rows["patience"]["total_executions"] == 1
        finally:
            daemon.ensure_stopped()


def test_config_file_turns_the_daemon_on_and_declares_its_limit(tmp_path: Path) -> None:
    """[repeater] daemon_enabled and a [rate_limiting.resources] entry the daemon does not
    have: rpr declares it, so the daemon enforces it for everyone."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            config = w.home / "config" / "patience" / "config.toml"
            config.parent.mkdir(parents=True)
            config.write_text(
                f'[daemon]\nsocket_path = "{w.socket}"\n'
                '[rate_limiting.resources]\n"cfg:*" = { limit = 2, window = "1s" }\n'
                "[repeater]\ndaemon_enabled = true\n"
            )
            r = w.rpr("count", "--times", "4", "--resource-id", "cfg:api", "--json", "--", "true")
            assert r.returncode == 0, r.stderr
            starts = [run["actual_start"] for run in json_runs(r.stdout)]
            assert most_in_window(starts, 0.98) <= 2
            state = resource_states(daemon, "cfg:api")[0]
            assert state["rate_limit"]["limit"] == 2
            assert state["tokens_granted"] == 4
        finally:
            daemon.ensure_stopped()


def test_schedule_is_registered_with_the_daemon(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            proc = w.start(RPR, "interval", "--every", "100ms", "--times", "30",
                           *w.daemon_flags("sched"), "--", "true")  # fmt: skip
            try:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    states = resource_states(daemon, "sched")
                    clients = states[0]["active_clients"] if states else {}
                    schedules = [c["schedule"] for c in clients.values() if c["schedule"]]
                    if schedules:
                        break
                    time.sleep(0.05)
                assert schedules == [
                    {"type": "interval", "interval": 0.1, "count": 30, "duration": None,
                     "coordination": True}
                ]  # fmt: skip
            finally:
                proc.communicate(timeout=30)
        finally:
            daemon.ensure_stopped()


# --- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--daemon-fail-mode", "maybe"], '--daemon-fail-mode: "maybe" is not one of'),
        (["--resource-id", "a b"], "--resource-id: resource id 'a b' contains whitespace"),
        (["--resource-id", "x" * 300], "--resource-id: resource id is 300 characters long"),
        (["--daemon-timeout", "0s"], '--daemon-timeout: "0s" must be more than zero'),
        (["--daemon-timeout", "5"], "--daemon-timeout:"),
        (["--daemon-socket", ""], "--daemon-socket: must not be empty"),
        (["--daemon-auto-start=perhaps"], "expected true or false"),
        (["--daemon", "--daemon-socket", "/tmp/" + "s" * 120], "is 125 bytes, the limit is 107"),
    ],
)
@pytest.mark.parametrize("tool", ["rpr", "patience"])
def test_bad_daemon_options_exit_2_with_one_line(
    tmp_path: Path, tool: str, args: list[str], message: str
) -> None:
    with world(tmp_path) as w:
        head = ["count", "--times", "1"] if tool == "rpr" else ["fixed"]
        r = w.run(RPR if tool == "rpr" else PATIENCE, *head, *args, "--", "true")
        assert r.returncode == 2, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"{tool}: "), r.stderr
        assert message in lines[0], r.stderr


def test_bad_fail_mode_in_config_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        config = w.home / "bad.toml"
        config.write_text('[rate_limiting]\nfail_mode = "sometimes"\n')
        for argv in (
            [RPR, "--config", str(config), "count", "--times", "1", "--daemon"],
            [PATIENCE, "--config", str(config), "fixed", "--daemon"],
        ):
            r = w.run(*argv, "--", "true")
            assert r.returncode == 2, r.stderr
            assert (
                f"{config}: rate_limiting.fail_mode: expected one of share, full, closed"
                in r.stderr
            )


def test_without_daemon_nothing_of_the_coordination_is_loaded(tmp_path: Path) -> None:
    """Start-up budget: the plain path of both tools leaves coordination, client, threads and
    sockets alone; --daemon (here with no daemon to find) is what loads them."""
    code = (
        "import sys\n"
        "from TOOL import main\n"
        "rc = main(ARGS)\n"
        "heavy = ('patience.coordination', 'patience.daemon.client', 'patience.daemon.manager',\n"
        "         'threading', 'socket', 'json', 'subprocess')\n"
        "print(rc, sorted(m for m in heavy if m in sys.modules))\n"
    )
    with world(tmp_path) as w:
        for tool, args in (
            ("repeater.cli", ["count", "--times", "1"]),
            ("patience.cli", ["fixed"]),
        ):
            plain = code.replace("TOOL", tool).replace("ARGS", repr([*args, "-q", "--", "true"]))
            r = w.run(sys.executable, "-c", plain)
            assert r.stdout == "0 []\n", (tool, r.stderr)
            flags = ["--daemon", "--no-daemon-auto-start", "--daemon-socket", w.socket]
            coordinated = code.replace("TOOL", tool).replace(
                "ARGS", repr([*args, *flags, "-q", "--", "true"])
            )
            r = w.run(sys.executable, "-c", coordinated)
            assert r.stdout.startswith("0 ['json', 'patience.coordination',"), (tool, r.stderr)


def test_undetectable_resource_is_a_usage_error(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        r = w.rpr("count", "--times", "1", *w.daemon_flags(), "--", "patience", "fixed", "--")
        assert r.returncode == 2
        assert r.stderr == "rpr: no command to detect a resource from (give --resource-id)\n"


def test_daemon_token_past_the_for_deadline_ends_rpr_at_once(tmp_path: Path) -> None:
    """The daemon says the next token is 2 s away; --for ends in 1 s: rpr stops without waiting."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            started = time.monotonic()
            r = w.rpr("rate-limit", "--rate", "2/2s", "--for", "1s", "--json",
                      *w.daemon_flags("api:deadline"), "--", "true")  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert len(json_runs(r.stdout)) == 2
            assert time.monotonic() - started < 1.5
        finally:
            daemon.ensure_stopped()


def test_patience_max_time_is_not_overshot_waiting_for_a_token(tmp_path: Path) -> None:
    """One token per 10 s for the resource: the second attempt's token would come after
    --max-time 1s, so patience stops at once with the first attempt's status."""
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            config = w.home / "config" / "patience" / "config.toml"
            config.parent.mkdir(parents=True)
            config.write_text(
                '[rate_limiting.resources]\n"slow:api" = { limit = 1, window = "10s" }\n'
            )
            started = time.monotonic()
            r = w.patience(
                "fixed", "--delay", "10ms", "--attempts", "5", "--max-time", "1s",
                *w.daemon_flags("slow:api"), "--", "sh", "-c", "exit 3",
            )  # fmt: skip
            assert time.monotonic() - started < 0.9
            assert r.returncode == 3, r.stderr
            assert r.stderr.count("starting...") == 1
            assert "the next rate-limit token comes after --max-time 1s" in r.stderr
        finally:
            daemon.ensure_stopped()
