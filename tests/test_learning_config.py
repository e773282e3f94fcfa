"""The learning keys of a `[rate_limiting.resources]` entry (docs/adaptive-limits.md): read
into ResourceLimit.learning, an entry with only them (no limit), `patience config show`,
`validate` and `migrate` through the real `patience` executable, and each bad value named."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from patience.config import ConfigError, load
from patience.ratelimit.learned import Learning
from patience.settings import Limit
from tools import PATIENCE

TEXT = """
[rate_limiting.resources]
"api:a" = { limit = 10, window = "1s", adaptive = true, decrease = 0.7, floor = 2 }
"api:*" = { adaptive = false }
"db" = { adapt_to_load = true, throttle_pattern = "busy", throttle_exit = 75, increase = 2.5 }
"""


def config_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.toml"
    path.write_text(text)
    return path


def patience_config(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PATIENCE_SYSTEM_CONFIG_DIR": str(tmp_path / "etc"),
    }
    return subprocess.run(
        [PATIENCE, "config", *args], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=30, check=False,
    )  # fmt: skip


def test_the_keys_are_read_and_an_entry_may_carry_only_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATIENCE_SYSTEM_CONFIG_DIR", str(tmp_path / "etc"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home"))
    config = load("patience", config_file=str(config_file(tmp_path, TEXT)))
    limits = config.limits()
    assert limits["api:a"].limit == Limit(10, 1.0)
    assert limits["api:a"].learning == Learning(adaptive=True, decrease=0.7, floor=2)
    assert limits["api:*"].limit is None
    assert limits["api:*"].learning == Learning(adaptive=False)
    db = limits["db"].learning
    assert (db.adapt_to_load, db.throttle_pattern, db.throttle_exit, db.increase) == (
        True,
        "busy",
        75,
        2.5,
    )
    assert config.limit_for("api:b") == limits["api:*"]  # matched as any entry is


def test_show_validate_and_migrate_keep_them(tmp_path: Path) -> None:
    path = config_file(tmp_path, TEXT)
    shown = patience_config(tmp_path, "show", "--config", str(path))
    assert '"api:*" = { adaptive = false }' in shown.stdout, shown.stderr
    assert (
        '"api:a" = { limit = 10, window = "1s", algorithm = "diophantine", adaptive = true,'
        in shown.stdout
    )
    assert patience_config(tmp_path, "validate", str(path)).stdout == f"{path}: ok\n"
    migrated = patience_config(tmp_path, "migrate", str(path))
    assert migrated.returncode == 0, migrated.stderr
    assert '"api:*" = { adaptive = false }' in migrated.stdout
    assert (
        'db = { increase = 2.5, adapt_to_load = true, throttle_pattern = "busy", throttle_exit = 75 }'
        in migrated.stdout
    )


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("{ decrease = 0 }", "decrease: expected a number from 0.01 to 0.99, got 0"),
        ("{ increase = 0 }", "increase: expected a number from 0.001 to 10000, got 0"),
        ("{ floor = 1.5 }", "floor: expected a whole number from 1 to 1099511627776, got 1.5"),
        ("{ adapt_to_load = 1 }", "adapt_to_load: expected true or false, got 1"),
        ('{ window = "1s", adaptive = true }', 'expected limit ({ limit = 100, window = "1m" })'),
    ],
)
def test_bad_values_are_named(tmp_path: Path, entry: str, error: str) -> None:
    path = config_file(tmp_path, f'[rate_limiting.resources]\n"api:x" = {entry}\n')
    with pytest.raises(ConfigError) as caught:
        load("patience", config_file=str(path))
    assert 'rate_limiting.resources."api:x"' in str(caught.value) and error in str(caught.value)
