"""The [alerting] keys and [alerting.resources] overrides as the configuration reads them:
values checked, overrides merged by source, unknown fields warned about, `config show`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from patience.config import ConfigError, load
from patience.config.show import render
from patience.daemon.alerts.settings import AlertSettings, RuleSettings


def loaded(tmp_path: Path, text: str, user: str = "") -> AlertSettings:
    explicit = tmp_path / "explicit.toml"
    explicit.write_text(text)
    (tmp_path / "config" / "patience").mkdir(parents=True, exist_ok=True)
    (tmp_path / "config" / "patience" / "config.toml").write_text(user)
    config = load(
        "patience-daemon",
        config_file=str(explicit),
        environ={"XDG_CONFIG_HOME": str(tmp_path / "config")},
        cwd=str(tmp_path),
        system_dir=str(tmp_path / "etc"),
    )
    return AlertSettings.from_config(config)


def test_overrides_replace_a_lower_sources_entry_whole(tmp_path: Path) -> None:
    user = '[alerting]\nmin_hold = "2m"\n[alerting.resources."api:*"]\nthrottle_count = 9\n'
    text = '[alerting.resources."api:*"]\nexhaustion_for = "1m"\n[alerting.resources."db"]\nenabled = false\n'
    settings = loaded(tmp_path, text, user)
    api = settings.for_resource("api:x")
    assert (api.exhaustion_for, api.throttle_count, api.min_hold) == (60.0, 3, 120.0)
    assert settings.for_resource("db").enabled is False
    assert settings.for_resource("other") == settings.defaults
    assert settings.defaults == dataclasses.replace(RuleSettings.default(), min_hold=120.0)


def test_notifiers_and_the_daemon_wide_keys(tmp_path: Path) -> None:
    text = '[alerting]\ncommand = ["logger", "-t", "x"]\nwebhook = "https://u:p@h:8443/hook"\ndegradation_window = "30m"\n'
    settings = loaded(tmp_path, text)
    assert settings.command == ["logger", "-t", "x"]
    assert settings.webhook == "https://u:p@h:8443/hook"
    assert settings.degradation_window == 1800.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            '[alerting]\nwebhook = "http://"',
            "alerting.webhook: expected an http:// or https:// URL",
        ),
        (
            '[alerting]\ncommand = "logger"',
            'alerting.command: expected a command as a list of strings, such as ["notify-send", "patience"], got "logger"',
        ),
        ('[alerting]\ncommand = ["", "x"]', "alerting.command: expected a command"),
        (
            "[alerting]\nlatency_factor = 0.5",
            "alerting.latency_factor: expected a number, 1 or more, got 0.5",
        ),
        (
            '[alerting]\ndegradation_window = "10s"',
            "alerting.degradation_window: expected a duration of at least 1m",
        ),
        ('[alerting.resources."x"]\ndegradation_window = "1h"', None),
        ('[alerting.resources.""]\nmin_hold = "1s"', 'expected a resource id or pattern, got ""'),
        ('[alerting.resources]\n"x" = 3', "alerting.resources.x: expected a table, got 3"),
    ],
)
def test_bad_values_name_the_key(tmp_path: Path, text: str, message: str | None) -> None:
    if message is None:  # a daemon-wide key in an override: warned about, ignored
        explicit = tmp_path / "c.toml"
        explicit.write_text(text)
        config = load("patience-daemon", config_file=str(explicit), environ={}, cwd=str(tmp_path),
                      system_dir=str(tmp_path))  # fmt: skip
        assert any(
            "unknown key alerting.resources.x.degradation_window" in w for w in config.warnings
        )
        assert config.alert_overrides() == {"x": {}}
        return
    with pytest.raises(ConfigError) as caught:
        loaded(tmp_path, text)
    assert message in str(caught.value)


def test_config_show_prints_the_alerting_section(tmp_path: Path) -> None:
    explicit = tmp_path / "c.toml"
    explicit.write_text('[alerting]\ncommand = ["logger", "-t", "patience alert"]\n')
    config = load("patience", config_file=str(explicit), environ={}, cwd=str(tmp_path),
                  system_dir=str(tmp_path))  # fmt: skip
    shown = render(config)
    assert "[alerting]" in shown
    assert 'command = ["logger", "-t", "patience alert"]' in shown
    assert 'min_hold = "1m"' in shown and "exhaustion_utilisation = 0.9" in shown
