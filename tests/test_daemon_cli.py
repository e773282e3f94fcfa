"""`patience-daemon` on the command line: help, version, and every bad flag, environment value
or configuration value gets one line naming the problem and exits 2."""

from __future__ import annotations

import os
import plistlib
import subprocess
from pathlib import Path

import pytest

from daemon_support import DAEMON, running
from patience.cliparse import parse
from patience.daemon.cli import OPTIONS
from patience.daemon.settings import ConfigError, load


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DAEMON, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_help_and_version() -> None:
    result = cli("--help")
    assert result.returncode == 0
    assert result.stdout.startswith("usage: patience-daemon [--socket PATH]")
    assert "patience-daemon status" in result.stdout and "--log-level" in result.stdout
    version = cli("--version")
    assert (version.returncode, version.stdout) == (0, "patience-daemon 0.1.0\n")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--sockett", "/x"],
            ": unknown flag --sockett (did you mean --socket?)",
        ),
        (["--socket"], "--socket needs a value (--socket PATH)"),
        (["--log-level", "loud"], '--log-level: "loud" is not one of debug, info, warning, error'),
        (["extra"], 'unexpected argument "extra" (see patience-daemon --help)'),
        (["status", "--timeout", "1s"], " status: unknown flag --timeout (see --help)"),
        (["stop", "--timeout", "soon"], '--timeout: "soon" is not a duration'),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = cli(*args)
    assert result.returncode == 2
    prefix = "patience-daemon" if message[0] in ": " else "patience-daemon: "
    assert result.stderr.startswith(prefix + message)
    assert result.stderr.count("\n") == 1


def test_bad_log_level_in_the_environment() -> None:
    result = cli("--socket", "/tmp/none.sock", env={"PATIENCE_LOG_LEVEL": "chatty"})
    assert result.returncode == 2
    assert 'PATIENCE_LOG_LEVEL: "chatty" is not one of' in result.stderr


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[daemon\n", "not valid TOML"),
        ("daemon = 5\n", "daemon: expected a table, got 5"),
        ('[daemon]\nlog_level = "loud"\n', 'daemon.log_level: "loud" is not one of'),
        (
            '[daemon]\nmetrics_enabled = "yes"\n',
            'daemon.metrics_enabled: expected true or false, got "yes"',
        ),
        ('[daemon]\nretention = "30"\n', 'daemon.retention: "30" has no unit (try 30s)'),
        ("[daemon]\nretention_count = 0\n", "daemon.retention_count: 0 is too small (at least 1)"),
        (
            "[daemon]\nmax_connections = 1.5\n",
            "daemon.max_connections: expected a whole number, got 1.5",
        ),
        ('[daemon]\nidle_timeout = "0s"\n', "daemon.idle_timeout: must be longer than 0"),
        (
            '[rate_limiting]\ndefault_algorithm = "leaky"\n',
            'rate_limiting.default_algorithm: "leaky" is not one of',
        ),
        (
            "[rate_limiting]\nresources = [1]\n",
            "rate_limiting.resources: expected a table, got an array",
        ),
        (
            '[rate_limiting.resources]\n"api" = 5\n',
            'rate_limiting.resources."api": expected a table like',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5 }\n',
            'rate_limiting.resources."api": window is missing',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = "lots", window = "1m" }\n',
            'rate_limiting.resources."api".limit: expected a whole number, got "lots"',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "1 minute" }\n',
            'rate_limiting.resources."api".window: "1 minute" is not a duration',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "0s" }\n',
            'rate_limiting.resources."api".window: must be longer than 0',
        ),
        (
            '[rate_limiting.resources]\n"api" = { limit = 5, window = "1m", algorithm = "x" }\n',
            'rate_limiting.resources."api".algorithm: "x" is not one of',
        ),
        (
            '[rate_limiting.resources]\n"a b" = { limit = 5, window = "1m" }\n',
            "rate_limiting.resources.\"a b\": resource id 'a b' contains whitespace",
        ),
    ],
)
def test_bad_configuration_names_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "config.toml"
    config.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load(str(config))
    assert str(caught.value).startswith(f"{config}: ")
    assert message in str(caught.value)
    result = cli("--socket", str(tmp_path / "d.sock"), "--config", str(config))
    assert result.returncode == 2
    assert result.stderr == f"patience-daemon: {caught.value}\n"


def test_a_missing_configuration_file(tmp_path: Path) -> None:
    result = cli("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml: cannot read the configuration: No such file or directory" in result.stderr


def test_a_full_configuration_is_read(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        """
[daemon]
socket_path = "/run/x.sock"
log_level = "debug"
metrics_enabled = false
storage_path = "/var/x.db"
retention_age = "7d"
retention_count = 500
max_connections = 64
idle_timeout = "30s"
client_ttl = "2m"
peer_group = "staff"

[rate_limiting]
default_algorithm = "gcra"
coordination_enabled = true

[rate_limiting.resources]
"api:external:*" = { limit = 1000, window = "1h" }
"database:postgres:prod_db" = { limit = 100, window = "1m", algorithm = "fixed-window" }

[repeater]
default_interval = "30s"
"""
    )
    settings, warnings = load(str(config))
    assert warnings == []
    assert settings.socket_path == "/run/x.sock" and settings.log_level == "debug"
    assert not settings.metrics_enabled and settings.storage_path == "/var/x.db"
    assert (settings.retention, settings.retention_count) == (7 * 86400, 500)
    assert (settings.max_connections, settings.idle_timeout, settings.client_ttl) == (64, 30, 120)
    assert settings.peer_group == "staff" and settings.default_algorithm == "gcra"
    assert [(p, r.limit, r.window, r.algorithm) for p, r in settings.limits.items()] == [
        ("api:external:*", 1000, 3600.0, "gcra"),
        ("database:postgres:prod_db", 100, 60.0, "fixed-window"),
    ]


def test_unknown_keys_are_warnings_naming_file_and_key() -> None:
    config = '[daemon]\nsokcet_path = "/x"\n[rate_limiting]\nspeed = 1\n'
    config += '[rate_limiting.resources]\n"r" = { limit = 1, window = "1s", burst = 2 }\n'
    with running(config) as daemon:
        log = daemon.log_text()
        assert f"warning: {daemon.config}: unknown key daemon.sokcet_path (ignored)" in log
        assert "unknown key rate_limiting.speed (ignored)" in log
        assert 'unknown key rate_limiting.resources."r".burst (ignored)' in log


def test_configuration_file_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "env.toml"
    config.write_text('[daemon]\nlog_level = "shout"\n')
    result = cli("--socket", str(tmp_path / "d.sock"), env={"PATIENCE_CONFIG_FILE": str(config)})
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
    plist = plistlib.loads((root / "launchd" / "sh.patience.daemon.plist").read_bytes())
    assert plist["ProgramArguments"][0].endswith("/patience-daemon")
    parse(OPTIONS["run"], plist["ProgramArguments"][1:], "patience-daemon")
