"""`patience-daemon` on the command line: help, version, and every bad flag, environment value
or configuration value gets one line naming the problem and exits 2."""

from __future__ import annotations

import plistlib
import subprocess
from pathlib import Path

import pytest

from daemon_support import Daemon, isolated_env, run_daemon, running, short_dir
from patience.cliparse import parse
from patience.config import ConfigError, load
from patience.daemon.cli import OPTIONS
from patience.settings import Limit


def cli(
    directory: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_daemon(directory, *args, env=env)


def test_help_and_version(tmp_path: Path) -> None:
    result = cli(tmp_path, "--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: patience-daemon [--socket PATH]")
    assert "patience-daemon status" in result.stdout and "--log-level" in result.stdout
    assert "the files rpr and patience read" in result.stdout
    version = cli(tmp_path, "--version")
    assert (version.returncode, version.stdout) == (0, "patience-daemon 0.1.0\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sockett", "/x"],
            ": unknown flag --sockett (did you mean --socket?)",
        ),
        (["--socket"], "--socket needs a value (--socket PATH)"),
        (
            ["--log-level", "loud"],
            '--log-level: expected one of debug, info, warning, error, got "loud"',
        ),
        (["extra"], 'unexpected argument "extra" (see patience-daemon --help)'),
        (["status", "--timeout", "1s"], " status: unknown flag --timeout (see --help)"),
        (["stop", "--timeout", "soon"], '--timeout: "soon" is not a duration'),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli(tmp_path, *args)
    assert result.returncode == 2
    prefix = "patience-daemon" if message[0] in ": " else "patience-daemon: "
    assert result.stderr.startswith(prefix + message)
    assert result.stderr.count("\n") == 1


def test_bad_log_level_in_the_environment(tmp_path: Path) -> None:
    result = cli(tmp_path, "--socket", "/tmp/none.sock", env={"PATIENCE_LOG_LEVEL": "chatty"})
    assert result.returncode == 2
    assert result.stderr == (
        "patience-daemon: environment variable PATIENCE_LOG_LEVEL: expected one of debug,"
        ' info, warning, error, got "chatty"\n'
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[daemon\n", "not valid TOML"),
        ("daemon = 5\n", "daemon: expected a table, got 5"),
        ('[daemon]\nlog_level = "loud"\n', "daemon.log_level: expected one of debug, info,"),
        (
            '[daemon]\nmetrics_enabled = "yes"\n',
            'daemon.metrics_enabled: expected true or false, got "yes"',
        ),
        ('[daemon]\nretention = "30"\n', 'daemon.retention: expected a duration: "30" has no'),
        ('[daemon]\nretention_age = "0s"\n', "daemon.retention_age: expected a duration greater"),
        ("[daemon]\nretention_count = 0\n", "daemon.retention_count: expected a whole number"),
        ("[daemon]\nmax_connections = 1.5\n", "daemon.max_connections: expected a whole number"),
        ('[daemon]\nidle_timeout = "0s"\n', "daemon.idle_timeout: expected a duration greater"),
        ('[daemon]\nclient_ttl = "soon"\n', 'daemon.client_ttl: expected a duration: "soon"'),
        ('[daemon]\nsocket_path = ""\n', "daemon.socket_path: expected a path"),
        ("[daemon]\nstorage_path = 5\n", "daemon.storage_path: expected a path"),
        ("[daemon]\npeer_group = 7\n", "daemon.peer_group: expected a non-empty string"),
        (
            '[rate_limiting]\ndefault_algorithm = "leaky"\n',
            "rate_limiting.default_algorithm: expected one of diophantine, fixed-window, gcra",
        ),
        ("[rate_limiting]\nresources = [1]\n", "rate_limiting.resources: expected a table"),
        ('[rate_limiting.resources]\n"api" = 5\n', "rate_limiting.resources.api: expected a"),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5 }\n',
            "rate_limiting.resources.api: expected window",
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = "lots", window = "1m" }\n',
            "rate_limiting.resources.api.limit: expected a whole number from 1 to",
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "1 minute" }\n',
            'rate_limiting.resources.api.window: expected a duration: "1 minute" is not',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "0s" }\n',
            "rate_limiting.resources.api.window: expected a duration greater than 0",
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "1m", algorithm = "x" }\n',
            "rate_limiting.resources.api.algorithm: expected one of diophantine,",
        ),
    ],
)
def test_bad_configuration_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    """The daemon's error is the shared loader's, word for word, on one line."""
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(
            "patience-daemon",
            config_file=str(config),
            environ=isolated_env(tmp_path),
            cwd=str(tmp_path),
        )
    assert str(caught.value).startswith(f"{config}: {message}")
    result = cli(tmp_path, "--socket", str(tmp_path / "d.sock"), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == f"patience-daemon: {caught.value}\n"


SOURCES = {  # where each source lives, relative to the isolated directory (see isolated_env)
    "system file": "etc/config.toml",
    "user file": "config/patience/config.toml",
    "project file": ".patience.toml",
    "explicit file": "explicit.toml",
}


@pytest.mark.parametrize("source", [*SOURCES, "environment"])
def test_a_bad_value_in_any_source_stops_the_daemon_naming_it(tmp_path: Path, source: str) -> None:
    args = ["--socket", str(tmp_path / "d.sock")]
    env = {}
    if source == "environment":
        env["PATIENCE_LOG_LEVEL"] = "loud"
        where = "environment variable PATIENCE_LOG_LEVEL"
    else:
        path = tmp_path / SOURCES[source]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text('[daemon]\nlog_level = "loud"\n')
        where = f"{path if source != 'project file' else '.patience.toml'}: daemon.log_level"
        if source == "explicit file":
            args += ["--config", str(path)]
    result = cli(tmp_path, *args, env=env)
    assert result.returncode == 2
    assert result.stderr == (
        f'patience-daemon: {where}: expected one of debug, info, warning, error, got "loud"\n'
    )


def test_every_source_is_read_in_order_and_the_flags_win() -> None:
    """System (YAML, the seed's layout) < user < project < explicit < environment < flags."""
    with short_dir() as directory:
        (directory / "etc").mkdir()
        (directory / "etc" / "config.yaml").write_text(
            "daemon:\n  max_connections: 3\n  log_level: debug\n"
            "rate_limiting:\n  resources:\n"
            '    "api:*": { limit: 9, window: 1m }\n'
            '    "db:*": { limit: 8, window: 1m }\n'
        )
        (directory / "config" / "patience").mkdir(parents=True)
        (directory / "config" / "patience" / "config.toml").write_text(
            '[rate_limiting.resources]\n"api:*" = { limit = 5, window = "1m" }\n'
        )
        (directory / ".patience.toml").write_text(
            '[rate_limiting.resources]\n"api:x" = { limit = 2, window = "1m" }\n'
        )
        daemon = Daemon(
            directory,
            '[daemon]\nsocket_path = "/nowhere/d.sock"\n'
            '[rate_limiting]\ndefault_algorithm = "gcra"\n',
            args=("--log-level", "info"),
        )
        try:
            daemon.start(env={"PATIENCE_LOG_LEVEL": "error"})  # --log-level info beats it
            with daemon.client() as client:  # --socket beats socket_path
                api_x, api_y, db = (client.acquire(r) for r in ("api:x", "api:y", "db:z"))
            assert (api_x.limit, api_x.limit_source) == (Limit(2, 60.0, "gcra"), "config:api:x")
            assert (api_y.limit.count, api_y.limit_source) == (5, "config:api:*")
            assert (db.limit.count, db.limit_source) == (8, "config:db:*")
            connections = [daemon.raw() for _ in range(4)]  # max_connections from the system
            replies = [c.ask('{"type":"ping"}') for c in connections[:3]]
            assert [r["type"] for r in replies] == ["pong", "pong", "pong"]
            assert b"too many connections (3)" in connections[3].line()
            for connection in connections:
                connection.close()
            log = daemon.log_text()
            assert "INFO: serving" in log and "DEBUG" not in log
        finally:
            daemon.ensure_stopped()


def test_a_missing_configuration_file(tmp_path: Path) -> None:
    result = cli(tmp_path, "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert result.stderr == f"patience-daemon: --config: {tmp_path / 'nope.toml'}: no such file\n"
    named = cli(tmp_path, env={"PATIENCE_CONFIG_FILE": str(tmp_path / "nope.toml")})
    assert named.returncode == 2
    assert named.stderr.startswith("patience-daemon: PATIENCE_CONFIG_FILE: ")


def test_unknown_keys_are_warnings_naming_file_and_key() -> None:
    config = '[daemon]\nsokcet_path = "/x"\n[rate_limiting]\nspeed = 1\n'
    config += '[rate_limiting.resources]\n"r" = { limit = 1, window = "1s", burst = 2 }\n'
    with running(config) as daemon:
        log = daemon.log_text()
        assert (
            f"warning: {daemon.config}: unknown key daemon.sokcet_path"
            " (ignored; did you mean socket_path?)" in log
        )
        assert "unknown key rate_limiting.speed (ignored)" in log
        assert "unknown key rate_limiting.resources.r.burst (ignored)" in log


def test_configuration_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "env.toml"
    config.write_text('[daemon]\nlog_level = "shout"\n')
    result = cli(
        tmp_path, "--socket", str(tmp_path / "d.sock"), env={"PATIENCE_CONFIG_FILE": str(config)}
    )
    assert result.returncode == 2
    assert f"{config}: daemon.log_level" in result.stderr


def test_shipped_service_files_use_the_real_command_line() -> None:
    root = Path(__file__).parent.parent / "contrib"
    unit = (root / "systemd" / "patience-daemon.service").read_text()
    fields = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#")
    )
    assert fields["Type"] == "notify"
    assert fields["ExecReload"] == "/bin/kill -HUP $MAINPID"
    argv = fields["ExecStart"].split()
    assert argv[0].endswith("/patience-daemon")
    parsed = parse(OPTIONS["run"], argv[1:], "patience-daemon")
    assert parsed["socket"] == "/run/patience/daemon.sock"
    assert parsed["config"] is None  # /etc/patience/config.toml is read anyway
    plist = plistlib.loads((root / "launchd" / "sh.patience.daemon.plist").read_bytes())
    assert plist["ProgramArguments"][0].endswith("/patience-daemon")
    parse(OPTIONS["run"], plist["ProgramArguments"][1:], "patience-daemon")
