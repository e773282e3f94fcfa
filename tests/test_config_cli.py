"""`patience config show | validate | migrate`, through the real `patience` executable (and,
for the finer cases, `patience.config.cli.main` in-process). Each test gets its own HOME,
working directory and system directory ($PATIENCE_SYSTEM_CONFIG_DIR): /etc is never read."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path

import pytest

from patience.config import load, schema
from patience.config.cli import main
from tools import PATIENCE


class Machine:
    def __init__(self, tmp: Path) -> None:
        self.etc, self.home, self.cwd = tmp / "etc", tmp / "home", tmp / "project"
        for d in (self.etc, self.home, self.cwd):
            d.mkdir()
        self.env = {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "PATIENCE_SYSTEM_CONFIG_DIR": str(self.etc),
        }

    def write(self, path: Path, text: str) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def user(self, text: str) -> Path:
        return self.write(self.home / ".config" / "patience" / "config.toml", text)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PATIENCE, "config", *args],
            cwd=self.cwd,
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    return Machine(tmp_path)


@pytest.fixture
def inproc(machine: Machine, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """The same machine for main() called in this process."""
    for name in list(os.environ):
        if name.startswith(("PATIENCE_", "RPR_", "XDG_")):
            monkeypatch.delenv(name)
    for name, value in machine.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(machine.cwd)
    return machine


def line_of(out: str, key: str) -> str:
    return next(line for line in out.splitlines() if line.startswith(f"{key} = "))


# ---- show ---------------------------------------------------------------------------------------


def test_show_prints_each_value_with_its_source(machine: Machine) -> None:
    user = machine.user("[patience]\nattempts = 6\n[daemon]\nlog_level = 'debug'\n")
    project = machine.write(machine.cwd / ".patience.toml", "timeout = '30s'\n")
    explicit = machine.write(machine.cwd / "extra.toml", "[repeater]\ndefault_interval = '2m'\n")
    system = machine.write(
        machine.etc / "config.yaml",
        "rate_limiting:\n  resources:\n    'api:external:*': {limit: 1000, window: 1h}\n",
    )
    r = machine.run("show", "--config", str(explicit), PATIENCE_TIMEOUT="45s")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert line_of(out, "attempts").startswith("attempts = 6  ")
    assert line_of(out, "attempts").endswith(f"# {user}: patience.attempts")
    assert line_of(out, "timeout").endswith("# environment variable PATIENCE_TIMEOUT")
    assert line_of(out, "timeout").startswith('timeout = "45s"')
    assert line_of(out, "default_interval").startswith('default_interval = "2m"')
    assert line_of(out, "default_interval").endswith(f"# {explicit}: repeater.default_interval")
    assert line_of(out, "default_strategy").endswith("# default")
    assert "# socket_path is not set (default)" in out
    resource = line_of(out, '"api:external:*"')
    assert resource.startswith(
        '"api:external:*" = { limit = 1000, window = "1h", algorithm = "diophantine" }'
    )
    assert resource.endswith(f'# {system}: rate_limiting.resources."api:external:*"')
    # the repeater and patience log levels come from [daemon] through their fallback
    assert out.count(f"# {user}: daemon.log_level") == 3
    for where in (f"system file: {system}", f"user file: {user}", "environment: PATIENCE_TIMEOUT"):
        assert where in out
    assert f"project file: {project}" in out or "project file: .patience.toml" in out


def test_show_output_is_a_configuration_file_with_the_same_values(
    inproc: Machine, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    inproc.user(
        "[patience]\nattempts = 6\nsuccess_pattern = 'ok \\d+ \"x\"'\n"
        "[rate_limiting.resources]\n'db' = { limit = 3, window = '90s' }\n"
    )
    monkeypatch.setenv("RPR_DEFAULT_INTERVAL", "1h30m")
    assert main(["show"]) == 0
    snapshot = inproc.write(inproc.cwd.parent / "snapshot.toml", capsys.readouterr().out)
    before = load("rpr")
    monkeypatch.delenv("RPR_DEFAULT_INTERVAL")
    (inproc.home / ".config" / "patience" / "config.toml").unlink()
    after = load("rpr", config_file=str(snapshot))
    assert after.warnings == []
    assert after.get("repeater.default_interval") == 5400.0
    assert after.get("patience.success_pattern") == 'ok \\d+ "x"'
    for name in schema.KEYS:
        assert after.get(name) == before.get(name), name
    assert after.limits() == before.limits()


def test_show_prints_warnings_on_stderr(machine: Machine) -> None:
    user = machine.user("[patience]\natempts = 3\n")
    r = machine.run("show")
    assert r.returncode == 0
    assert r.stderr == (
        f"patience: warning: {user}: unknown key patience.atempts "
        "(ignored; did you mean attempts?)\n"
    )


def test_show_with_a_bad_value_exits_2_naming_file_and_key(machine: Machine) -> None:
    user = machine.user("[patience]\nattempts = 'many'\n")
    r = machine.run("show")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr == (
        f'patience: {user}: patience.attempts: expected a whole number from 1 to 1000, got "many"\n'
    )


def test_show_with_a_bad_variable_exits_2_naming_it(machine: Machine) -> None:
    r = machine.run("show", RPR_METRICS_ENABLED="maybe")
    assert r.returncode == 2
    assert r.stderr == (
        'patience: environment variable RPR_METRICS_ENABLED: expected true or false, got "maybe"\n'
    )


def test_show_with_a_missing_config_file(machine: Machine) -> None:
    r = machine.run("show", "--config", "nope.toml")
    assert (r.returncode, r.stderr) == (2, "patience: --config: nope.toml: no such file\n")
    r = machine.run("show", PATIENCE_CONFIG_FILE="gone.toml")
    assert (r.returncode, r.stderr) == (
        2,
        "patience: PATIENCE_CONFIG_FILE: gone.toml: no such file\n",
    )


# ---- validate ------------------------------------------------------------------------------------


def test_validate_a_good_file(machine: Machine) -> None:
    path = machine.write(machine.cwd / "c.toml", "[patience]\nattempts = 4\n")
    r = machine.run("validate", str(path))
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{path}: ok\n", "")


def test_validate_a_good_file_with_warnings_still_passes(machine: Machine) -> None:
    path = machine.write(machine.cwd / "c.toml", "[patience]\ncolour = 4\n")
    r = machine.run("validate", str(path))
    assert r.returncode == 0
    assert r.stdout == f"{path}: ok\n"
    assert r.stderr == f"patience: warning: {path}: unknown key patience.colour (ignored)\n"


def test_validate_a_bad_file_reports_every_problem_and_exits_2(machine: Machine) -> None:
    path = machine.write(
        machine.cwd / "c.toml",
        "[patience]\nattempts = 0\ntimeout = '5'\nbogus = 1\n[daemon]\nlog_level = 'loud'\n",
    )
    r = machine.run("validate", str(path))
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        f"patience: warning: {path}: unknown key patience.bogus (ignored)",
        f"patience: {path}: patience.attempts: expected a whole number from 1 to 1000, got 0",
        f'patience: {path}: patience.timeout: expected a duration: "5" has no unit (try 5s)',
        f'patience: {path}: daemon.log_level: expected one of debug, info, warning, error, got "loud"',
    ]


def test_validate_a_broken_file(machine: Machine) -> None:
    path = machine.write(machine.cwd / "c.toml", "[patience\n")
    r = machine.run("validate", str(path))
    assert r.returncode == 2
    assert r.stderr.startswith(f"patience: {path}: not valid TOML: ")


def test_validate_a_missing_file(machine: Machine) -> None:
    r = machine.run("validate", "nope.toml")
    assert (r.returncode, r.stderr) == (2, "patience: nope.toml: no such file\n")


def test_validate_without_a_file_checks_every_source_in_effect(machine: Machine) -> None:
    user = machine.user("[patience]\nattempts = 4\n")
    system = machine.write(machine.etc / "config.toml", "[daemon]\nlog_level = 'info'\n")
    r = machine.run("validate", PATIENCE_ATTEMPTS="5")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{system}: ok\n{user}: ok\nenvironment (PATIENCE_ATTEMPTS): ok\n"


def test_validate_without_a_file_finds_a_bad_project_file(machine: Machine) -> None:
    machine.write(machine.cwd / "patience.toml", "attempts = 'x'\n")
    r = machine.run("validate")
    assert r.returncode == 2
    assert r.stderr == (
        'patience: patience.toml: attempts: expected a whole number from 1 to 1000, got "x"\n'
    )


def test_validate_with_nothing_configured(machine: Machine) -> None:
    r = machine.run("validate")
    assert (r.returncode, r.stdout) == (
        0,
        "no configuration files or variables found: the defaults apply\n",
    )


# ---- migrate -------------------------------------------------------------------------------------

GO_FILE = """\
# my old patience settings
attempts = 5
timeout = "30s"
success_pattern = 'deployed \\d+'
failure_pattern = "FATAL"
case_insensitive = true
daemon_enabled = true
daemon_socket = "/tmp/patience-test.sock"
daemon_timeout = "2s"
daemon_auto_start = false
"""


def test_migrate_to_stdout_leaves_the_original_untouched(machine: Machine) -> None:
    old = machine.write(machine.cwd / ".patience.toml", GO_FILE)
    stat = old.stat()
    r = machine.run("migrate", str(old))
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert old.read_text() == GO_FILE and old.stat().st_mtime_ns == stat.st_mtime_ns
    new = tomllib.loads(r.stdout)
    assert new == {
        "daemon": {"socket_path": "/tmp/patience-test.sock"},
        "patience": {
            "attempts": 5,
            "timeout": "30s",
            "success_pattern": "deployed \\d+",
            "failure_pattern": "FATAL",
            "case_insensitive": True,
            "daemon_enabled": True,
            "daemon_timeout": "2s",
            "daemon_auto_start": False,
        },
    }
    assert '# [repeater]\n# default_interval = "30s"' in r.stdout


def test_migrate_writes_new_which_revalidates_with_the_same_settings(machine: Machine) -> None:
    old = machine.write(machine.cwd / "old.toml", GO_FILE)
    new = machine.cwd / "new.toml"
    r = machine.run("migrate", str(old), str(new))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert r.stderr == f"patience: wrote {new} ({old} is unchanged)\n"
    assert old.read_text() == GO_FILE
    v = machine.run("validate", str(new))
    assert (v.returncode, v.stderr) == (0, "")
    empty = str(machine.cwd.parent)
    before = load(config_file=str(old), environ={"HOME": empty}, cwd=empty, system_dir=empty)
    after = load(config_file=str(new), environ={"HOME": empty}, cwd=empty, system_dir=empty)
    for key in (
        "attempts",
        "timeout",
        "success_pattern",
        "failure_pattern",
        "case_insensitive",
        "daemon_enabled",
        "daemon_socket",
        "daemon_timeout",
        "daemon_auto_start",
    ):
        assert after.get(f"patience.{key}") == before.get(f"patience.{key}"), key
    assert after.source("patience.daemon_socket").endswith("daemon.socket_path")


def test_migrate_refuses_to_overwrite(machine: Machine) -> None:
    old = machine.write(machine.cwd / "old.toml", GO_FILE)
    taken = machine.write(machine.cwd / "taken.toml", "keep me\n")
    r = machine.run("migrate", str(old), str(taken))
    assert r.returncode == 2
    assert r.stderr == f"patience: {taken}: already exists (choose another path or remove it)\n"
    assert taken.read_text() == "keep me\n"
    r = machine.run("migrate", str(old), str(old))
    assert r.returncode == 2 and old.read_text() == GO_FILE


def test_migrate_a_go_rpr_file_and_other_layouts(machine: Machine) -> None:
    old = machine.write(
        machine.cwd / "rpr.toml",
        "[defaults]\ntimeout = '45s'\nmax_retries = 2\nlog_level = 'WARN'\n"
        "[observability]\nmetrics_port = 9100\n"
        "[patience.defaults]\nmax_attempts = 4\n"
        "[rate_limiting.resources]\n'api:*' = { limit = 5, window = '1m', algorithm = 'GCRA' }\n",
    )
    r = machine.run("migrate", str(old))
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout) == {
        "rate_limiting": {
            "resources": {"api:*": {"limit": 5, "window": "1m", "algorithm": "GCRA"}}
        },
        "repeater": {
            "default_timeout": "45s",
            "max_retries": 2,
            "log_level": "warning",
            "metrics_port": 9100,
        },
        "patience": {"attempts": 4},
    }
    assert "# [repeater]" not in r.stdout  # the user has repeater settings already


def test_migrate_a_yaml_file(machine: Machine) -> None:
    old = machine.write(
        machine.cwd / "c.yaml",
        "tools:\n  patience:\n    max_attempts: 10\n  repeater:\n    default_interval: 30s\n",
    )
    r = machine.run("migrate", str(old))
    assert r.returncode == 0, r.stderr
    assert tomllib.loads(r.stdout) == {
        "repeater": {"default_interval": "30s"},
        "patience": {"attempts": 10},
    }


def test_migrate_warns_about_keys_it_drops(machine: Machine) -> None:
    old = machine.write(machine.cwd / "old.toml", "attempts = 3\nretries = 9\n")
    r = machine.run("migrate", str(old))
    assert r.returncode == 0
    assert r.stderr == f"patience: warning: {old}: unknown key retries (not migrated)\n"
    assert tomllib.loads(r.stdout) == {"patience": {"attempts": 3}}


def test_migrate_a_file_with_a_bad_value_exits_2(machine: Machine) -> None:
    old = machine.write(machine.cwd / "old.toml", "attempts = 0\n")
    new = machine.cwd / "new.toml"
    r = machine.run("migrate", str(old), str(new))
    assert r.returncode == 2
    assert r.stderr == f"patience: {old}: attempts: expected a whole number from 1 to 1000, got 0\n"
    assert not new.exists()


def test_migrate_a_missing_file(machine: Machine) -> None:
    r = machine.run("migrate", "nope.toml")
    assert (r.returncode, r.stderr) == (2, "patience: nope.toml: no such file\n")


# ---- usage -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["frobnicate"], 'config: unknown command "frobnicate" (use show, validate or migrate)'),
        (
            ["show", "extra"],
            "config show: takes no arguments (patience config show [--config FILE])",
        ),
        (["validate", "a", "b"], "config validate: expected patience config validate [FILE]"),
        (["migrate"], "config migrate: expected patience config migrate OLD [NEW]"),
        (["migrate", "a", "b", "c"], "config migrate: expected patience config migrate OLD [NEW]"),
    ],
)
def test_usage_errors_exit_2(
    inproc: Machine, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(args) == 2
    assert capsys.readouterr().err == f"patience: {message}\n"


@pytest.mark.parametrize("args", [["show", "--colour"], ["show", "--config"], ["validate", "-x"]])
def test_bad_options_exit_2(
    inproc: Machine, capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    """The wording is the shared option parser's; it names the option."""
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("patience: ") and args[-1] in err and err.count("\n") == 1


def test_help(machine: Machine) -> None:
    r = machine.run("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: patience config show [--config FILE]")
    r = machine.run()
    assert r.returncode == 2 and r.stderr.startswith("usage: patience config show")
