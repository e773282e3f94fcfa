"""rpr reads the shared configuration: files and environment fill what flags leave unset."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools import env, rpr, runs_and_summary


def isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment that reads no file of the host: empty system and user config dirs."""
    (tmp_path / "etc").mkdir(exist_ok=True)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env(
        PATIENCE_SYSTEM_CONFIG_DIR=str(tmp_path / "etc"),
        XDG_CONFIG_HOME=str(tmp_path / "home"),
        **extra,
    )


def test_project_file_supplies_interval_and_timeout(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text(
        '[repeater]\ndefault_interval = "100ms"\ndefault_timeout = "150ms"\n'
    )
    r = rpr(
        "interval",
        "--times",
        "3",
        "--json",
        "--",
        "sleep",
        "1",
        cwd=tmp_path,
        env=isolated(tmp_path),
    )
    assert r.returncode == 1, r.stderr
    runs, _ = runs_and_summary(r.stdout)
    assert all(run["timed_out"] for run in runs)
    # Runs of 150 ms every 100 ms: the default overrun policy keeps the phase.
    assert runs[1]["scheduled_start"] - runs[0]["scheduled_start"] == pytest.approx(0.2, abs=0.01)


def test_flags_beat_the_files(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text('[repeater]\ndefault_timeout = "50ms"\n')
    r = rpr(
        "count",
        "--times",
        "1",
        "--timeout",
        "2s",
        "--json",
        "--",
        "sleep",
        "0.2",
        cwd=tmp_path,
        env=isolated(tmp_path),
    )
    runs, _ = runs_and_summary(r.stdout)
    assert r.returncode == 0 and not runs[0]["timed_out"]


def test_environment_beats_files_and_go_variable_works(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text('[repeater]\ndefault_timeout = "5s"\n')
    r = rpr(
        "count",
        "--times",
        "1",
        "--json",
        "--",
        "sleep",
        "1",
        cwd=tmp_path,
        env=isolated(tmp_path, RPR_TIMEOUT="100ms"),
    )
    runs, _ = runs_and_summary(r.stdout)
    assert runs[0]["timed_out"]


def test_explicit_config_file_and_continue_on_error(tmp_path: Path) -> None:
    cfg = tmp_path / "rpr.toml"
    cfg.write_text("[repeater]\ncontinue_on_error = false\n")
    r = rpr(
        "--config", str(cfg), "count", "--times", "5", "-q", "--", "false", env=isolated(tmp_path)
    )
    assert r.returncode == 1
    r2 = rpr(
        "count",
        "--times",
        "5",
        "--json",
        "--",
        "false",
        env=isolated(tmp_path, RPR_CONFIG_FILE=str(cfg)),
    )
    _, summary = runs_and_summary(r2.stdout)
    assert summary["runs"] == 1


def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("[repeater]\ndefault_interval = 5\n")
    r = rpr("interval", "--times", "1", "--", "true", cwd=tmp_path, env=isolated(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    line = r.stderr.strip()
    assert line.startswith("rpr: .patience.toml: repeater.default_interval: expected a duration")
    assert len(line.splitlines()) == 1


def test_missing_explicit_file(tmp_path: Path) -> None:
    r = rpr("--config", str(tmp_path / "nope.toml"), "count", "--times", "1", "--", "true")
    assert r.returncode == 2
    assert "nope.toml: no such file" in r.stderr


def test_unknown_key_is_a_warning(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("[repeater]\nbogus = 1\n")
    r = rpr("count", "--times", "1", "-q", "--", "true", cwd=tmp_path, env=isolated(tmp_path))
    assert r.returncode == 0
    assert r.stderr.strip() == "rpr: warning: .patience.toml: unknown key repeater.bogus (ignored)"
