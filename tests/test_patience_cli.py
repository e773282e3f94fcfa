"""The `patience` command line: help, version, aliases, every usage error (exit 2, one line)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from patience import __version__
from patience.backoff import STRATEGY_NAMES
from tools import PATIENCE, run


def patience(*args: str, **kw) -> subprocess.CompletedProcess[str]:
    return run(PATIENCE, *args, **kw)


def test_version() -> None:
    for flag in ("--version", "-v"):
        r = patience(flag)
        assert r.returncode == 0
        assert r.stdout == f"patience {__version__}\n"


def test_help_lists_every_strategy_and_alias() -> None:
    r = patience("--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: patience")
    for alias in STRATEGY_NAMES:
        assert alias in r.stdout
    assert patience("-h").stdout == r.stdout


@pytest.mark.parametrize("alias", sorted(STRATEGY_NAMES))
def test_strategy_help_by_any_alias(alias: str) -> None:
    r = patience(alias, "--help")
    assert r.returncode == 0
    canonical = STRATEGY_NAMES[alias]
    assert r.stdout.startswith(f"usage: patience {canonical} [OPTIONS] -- COMMAND")
    for common in (
        "--attempts",
        "--timeout",
        "--max-time",
        "--retry-on",
        "--success-pattern",
        "--failure-pattern",
        "--case-insensitive",
        "--quiet",
        "--config",
        "--debug-config",
        "--daemon",
        "--resource-id",
        "--daemon-socket",
        "--daemon-timeout",
        "--no-daemon-auto-start",
    ):
        assert common in r.stdout


@pytest.mark.parametrize(
    ("strategy", "flags"),
    [
        ("http-aware", ["-f", "--fallback", "-m", "--max-delay"]),
        ("exponential", ["-b", "--base-delay", "-x", "--multiplier", "-m", "--max-delay"]),
        ("linear", ["-i", "--increment", "-m"]),
        ("fixed", ["-d", "--delay"]),
        ("jitter", ["-b", "-x", "-m"]),
        ("decorrelated-jitter", ["-b", "-x", "-m"]),
        ("fibonacci", ["-b", "-m"]),
        ("polynomial", ["-b", "-e", "--exponent", "-m"]),
        ("adaptive", ["-r", "--learning-rate", "-w", "--memory-window", "-f", "--fallback"]),
        ("diophantine", ["-r", "--rate-limit", "-w", "--window", "-o", "--retry-offsets"]),
    ],
)
def test_strategy_help_shows_its_flags_and_defaults(strategy: str, flags: list[str]) -> None:
    out = patience(strategy, "--help").stdout
    for flag in flags:
        assert f"{flag}," in out or f"{flag} " in out
    defaults = {
        "http-aware": ["(default exponential)", "(default 30m)"],
        "exponential": ["(default 1s)", "(default 2.0)", "(default 1m)"],
        "fixed": ["(default 1s)"],
        "polynomial": ["(default 2.0)"],
        "adaptive": ["(default 0.1)", "(default 50)", "(default exponential)"],
        "diophantine": ["(default 100)", "(default 1h)", "(default 0,10m,30m)", "(default 5s)"],
    }
    for default in defaults.get(strategy, []):
        assert default in out


def test_every_strategy_runs_by_every_alias(tmp_path: Path) -> None:
    fast = {
        "fixed": ["-d", "1ms"],
        "exponential": ["-b", "1ms"],
        "linear": ["-i", "1ms"],
        "jitter": ["-b", "1ms"],
        "decorrelated-jitter": ["-b", "1ms"],
        "fibonacci": ["-b", "1ms"],
        "polynomial": ["-b", "1ms"],
        "http-aware": ["-b", "1ms"],
        "adaptive": ["-b", "1ms"],
        "diophantine": ["-o", "0,1ms"],
    }
    state = {"XDG_STATE_HOME": str(tmp_path)}
    for alias, canonical in STRATEGY_NAMES.items():
        r = patience(
            alias, *fast[canonical], "-a", "2", "--", "sh", "-c", "echo x; exit 5", env=_env(state)
        )
        assert r.returncode == 5, (alias, r.stderr)
        assert r.stdout == "x\nx\n", alias


def _env(extra: dict[str, str]) -> dict[str, str]:
    from tools import env

    return env(**extra)


def test_daemon_flags_are_accepted_on_every_strategy(tmp_path: Path) -> None:
    daemon = [
        "--daemon",
        "--resource-id",
        "api",
        "--daemon-socket",
        str(tmp_path / "s"),
        "--daemon-timeout",
        "1s",
        "--no-daemon-auto-start",
    ]
    for name in ("fixed", "exponential", "diophantine", "http-aware"):
        r = patience(name, *daemon, "--", "true", env=_env({"XDG_STATE_HOME": str(tmp_path)}))
        assert r.returncode == 0, (name, r.stderr)


def test_config_file_is_accepted_before_and_after_the_strategy(tmp_path: Path) -> None:
    config = tmp_path / "patience.toml"
    config.write_text("attempts = 2\n")
    assert patience("--config", str(config), "fixed", "--", "true").returncode == 0
    assert patience(f"--config={config}", "fixed", "--", "true").returncode == 0
    assert patience("fixed", "--config", str(config), "--", "true").returncode == 0


def test_debug_config_shows_settings_and_their_source() -> None:
    r = patience("exp", "--debug-config", "-b", "5ms", "--", "true")
    assert r.returncode == 0
    assert "patience: settings for exponential:" in r.stderr
    assert "  --base-delay = 5ms (command line)" in r.stderr
    assert "  --max-delay = 1m (default)" in r.stderr
    assert "  --attempts = 3 (default)" in r.stderr


USAGE_ERRORS = [
    ([], "no strategy (try patience exponential -- CMD, or patience --help)"),
    (["expo", "--", "true"], 'unknown strategy "expo" (did you mean exp?)'),
    (["zzz", "--", "true"], 'unknown strategy "zzz" (see patience --help)'),
    (["--frobnicate", "fixed"], "unknown option --frobnicate"),
    (["fixed"], "fixed: put -- before the command, e.g. patience fixed -- "),
    (["fixed", "echo", "hi"], "fixed: put -- before the command (found 'echo')"),
    (["fixed", "--"], "fixed: no command after --"),
    (["fixed", "stray", "--", "true"], "fixed: unexpected argument 'stray' before --"),
    (["fixed", "--bogus", "--", "true"], "fixed: unknown flag --bogus"),
    (["exp", "--base-dely", "1s", "--", "true"], "did you mean --base-delay?"),
    (["fixed", "--delay", "--", "true"], "--delay needs a value"),
    (["fixed", "--delay", "5", "--", "true"], '--delay: "5" has no unit (try 5s)'),
    (["fixed", "--delay", "soon", "--", "true"], '--delay: "soon" is not a duration'),
    (["fixed", "--delay", "-1s", "--", "true"], '--delay: "-1s" is negative'),
    (["fixed", "-a", "0", "--", "true"], "--attempts: 0 is too small (at least 1)"),
    (["fixed", "-a", "1001", "--", "true"], "--attempts: 1001 is too large (at most 1000)"),
    (["fixed", "-a", "three", "--", "true"], '--attempts: "three" is not a whole number'),
    (["fixed", "-t", "-2s", "--", "true"], '--timeout: "-2s" is negative'),
    (["fixed", "--kill-after", "x", "--", "true"], "--kill-after:"),
    (["fixed", "--max-time", "0s", "--", "true"], '--max-time: "0s" must be more than zero'),
    (["fixed", "--retry-on", "x", "--", "true"], '--retry-on: "x" is not an exit code'),
    (["fixed", "--retry-on", "300", "--", "true"], '--retry-on: "300" is not within 0..255'),
    (["fixed", "--retry-on", "5-1", "--", "true"], '--retry-on: "5-1" is not within'),
    (
        ["fixed", "--success-pattern", "(", "--", "true"],
        'fixed: --success-pattern: invalid regular expression "("',
    ),
    (
        ["fixed", "--failure-pattern", "[", "--", "true"],
        'fixed: --failure-pattern: invalid regular expression "["',
    ),
    (["exp", "-x", "0.5", "--", "true"], "--multiplier: 0.5 is too small (at least 1.0)"),
    (["exp", "-x", "abc", "--", "true"], '--multiplier: "abc" is not a number'),
    (["exp", "-x", "nan", "--", "true"], '--multiplier: "nan" is not a number'),
    (["poly", "-e", "11", "--", "true"], "--exponent: 11 is too large (at most 10.0)"),
    (["exp", "-m", "forever", "--", "true"], "--max-delay:"),
    (["lin", "-i", "1", "--", "true"], '--increment: "1" has no unit'),
    (["ha", "-f", "adaptive", "--", "true"], '--fallback: "adaptive" is not a backoff strategy'),
    (["adapt", "-f", "nope", "--", "true"], '--fallback: "nope" is not a backoff strategy'),
    (["adapt", "-r", "0", "--", "true"], "--learning-rate: 0 is too small"),
    (["adapt", "-r", "1.5", "--", "true"], "--learning-rate: 1.5 is too large"),
    (["adapt", "-w", "0", "--", "true"], "--memory-window: 0 is too small"),
    (["dio", "-r", "0", "--", "true"], "--rate-limit: 0 is too small (at least 1)"),
    (["dio", "-w", "0s", "--", "true"], '--window: "0s" must be more than zero'),
    (["dio", "-o", "10m,1m", "--", "true"], '--retry-offsets: "10m,1m" goes back in time'),
    (["dio", "-o", "0,,1s", "--", "true"], "--retry-offsets: empty duration"),
    (
        ["dio", "-o", "5s", "--max-time", "1s", "--", "true"],
        "diophantine: --max-time 1s ends before the first planned attempt",
    ),
    (
        ["fixed", "--config", "/no/such/file.toml", "--", "true"],
        '--config: cannot read "/no/such/file.toml"',
    ),
    (
        ["--config", "/no/such/file.toml", "fixed", "--", "true"],
        '--config: cannot read "/no/such/file.toml"',
    ),
    (["--config"], "--config needs a file"),
    (["fixed", "--daemon-timeout", "0s", "--", "true"], "--daemon-timeout:"),
    (["fixed", "--resource-id", "", "--", "true"], "--resource-id: resource id is empty"),
    (["fixed", "--daemon-socket", " ", "--", "true"], "--daemon-socket: must not be empty"),
    (["fixed", "--daemon-auto-start=maybe", "--", "true"], "expected true or false"),
    (["fixed", "--quiet=perhaps", "--", "true"], "expected true or false"),
]


@pytest.mark.parametrize(
    ("args", "message"), USAGE_ERRORS, ids=[" ".join(a) or "nothing" for a, _ in USAGE_ERRORS]
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    r = patience(*args)
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("patience: ")
    assert message in r.stderr


def test_help_after_the_separator_belongs_to_the_command() -> None:
    r = patience("fixed", "--", "sh", "-c", 'echo "$1"', "sh", "--help")
    assert r.returncode == 0
    assert r.stdout == "--help\n"


def test_flags_after_the_separator_belong_to_the_command() -> None:
    r = patience("fixed", "--", "echo", "-a", "0", "--bogus")
    assert r.returncode == 0
    assert r.stdout == "-a 0 --bogus\n"


def test_config_subcommand_is_routed_to_the_config_tool() -> None:
    r = patience("config", "--help")
    assert r.returncode == 0
    assert r.stdout.startswith("usage: patience config")


def test_the_plain_path_imports_nothing_slow() -> None:
    """`patience fixed -- true` is what rpr spawns: no re, json, random, enum, typing..."""
    import sys

    code = (
        "import sys\n"
        "from patience.cli import main\n"
        "rc = main(['fixed', '-q', '--', 'true'])\n"
        "slow = ('re', 'json', 'random', 'enum', 'typing', 'dataclasses', 'subprocess',\n"
        "        'asyncio', 'datetime', 'signal', 'msgspec', 'hashlib', 'tomllib')\n"
        "print(rc, sorted(m for m in slow if m in sys.modules))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.stdout == "0 []\n", r.stderr
