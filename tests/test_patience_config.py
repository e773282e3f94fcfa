"""patience reads the shared configuration: every strategy, under its flags."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tools import PATIENCE, env, run


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env(
        PATIENCE_SYSTEM_CONFIG_DIR=str(tmp_path / "etc"),
        XDG_CONFIG_HOME=str(tmp_path / "home"),
        XDG_STATE_HOME=str(tmp_path / "state"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        **extra,
    )


def attempts_made(stderr: str) -> int:
    return stderr.count("starting...")


@pytest.mark.parametrize("strategy", ["fixed", "exponential", "linear", "fibonacci", "jitter"])
def test_project_file_sets_attempts_for_every_strategy(tmp_path: Path, strategy: str) -> None:
    (tmp_path / ".patience.toml").write_text("attempts = 2\n")  # the Go tool's flat key
    delay = ["--delay", "1ms"] if strategy == "fixed" else ["--max-delay", "1ms"]
    if strategy == "linear":
        delay = ["--increment", "1ms", "--max-delay", "1ms"]
    r = run(PATIENCE, strategy, *delay, "--", "false", cwd=tmp_path, env=isolated(tmp_path))
    assert r.returncode == 1
    assert attempts_made(r.stderr) == 2


def test_flag_beats_file_and_env_beats_file(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("[patience]\nattempts = 4\n")
    r = run(
        PATIENCE,
        "fixed",
        "-d",
        "1ms",
        "-a",
        "1",
        "--",
        "false",
        cwd=tmp_path,
        env=isolated(tmp_path),
    )
    assert attempts_made(r.stderr) == 1
    r = run(
        PATIENCE,
        "fixed",
        "-d",
        "1ms",
        "--",
        "false",
        cwd=tmp_path,
        env=isolated(tmp_path, PATIENCE_ATTEMPTS="2"),
    )
    assert attempts_made(r.stderr) == 2


def test_timeout_and_patterns_from_config(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text('[patience.defaults]\ntimeout = "100ms"\nattempts = 1\n')
    r = run(PATIENCE, "--config", str(cfg), "fixed", "--", "sleep", "2", env=isolated(tmp_path))
    assert r.returncode == 124
    cfg.write_text('[patience]\nsuccess_pattern = "READY"\n')
    r = run(
        PATIENCE,
        "fixed",
        "--",
        "sh",
        "-c",
        "echo READY; exit 3",
        env=isolated(tmp_path, PATIENCE_CONFIG_FILE=str(cfg)),
    )
    assert r.returncode == 0


def test_default_strategy_when_none_is_given(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text(
        '[patience]\ndefault_strategy = "fixed"\nattempts = 2\n'
    )
    r = run(PATIENCE, "--", "false", cwd=tmp_path, env=isolated(tmp_path))
    assert r.returncode == 1
    assert attempts_made(r.stderr) == 2
    assert "Retrying in 1s." in r.stderr  # fixed's default delay, not exponential's


def test_patience_without_a_strategy_reads_the_configuration_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`patience -- CMD` needs the configuration for its strategy and for its options: it is
    loaded once, so each warning is said once too."""
    import patience.config
    from patience.cli import main

    (tmp_path / ".patience.toml").write_text(
        '[patience]\ndefault_strategy = "fixed"\nattempts = 1\natempts = 2\n'
    )
    loads = []
    real_load = patience.config.load

    def counting_load(*args: Any, **kwargs: Any) -> patience.config.Config:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.chdir(tmp_path)
    for name, value in isolated(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(patience.config, "load", counting_load)
    assert main(["--", "true"]) == 0
    assert len(loads) == 1


def test_debug_config_names_the_source(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("[patience]\nattempts = 1\n")
    r = run(PATIENCE, "fixed", "--debug-config", "--", "true", cwd=tmp_path, env=isolated(tmp_path))
    assert "--attempts = 1 (.patience.toml: patience.attempts)" in r.stderr


def test_bad_value_exits_2_naming_file_and_key(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text('[patience]\nattempts = "many"\n')
    r = run(PATIENCE, "fixed", "--", "true", cwd=tmp_path, env=isolated(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    line = r.stderr.strip()
    assert line.startswith("patience: .patience.toml: patience.attempts:")
    assert len(line.splitlines()) == 1


def test_global_config_reaches_config_show(tmp_path: Path) -> None:
    cfg = tmp_path / "p.toml"
    cfg.write_text("[patience]\nattempts = 7\n")
    r = run(PATIENCE, "--config", str(cfg), "config", "show", env=isolated(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "7" in r.stdout and "p.toml" in r.stdout
