"""The daemon's settings, read from one TOML file in the shared format.

Only the `[daemon]` and `[rate_limiting]` sections matter here; the tools' sections are left
to them. A bad value is a ConfigError naming the file, the key and what is expected; an unknown
key in a section we read is a warning naming the file and the key.
"""

from __future__ import annotations

import tomllib
from typing import Any

import msgspec

from patience.config.resources import ResourceLimit
from patience.durations import DurationError, parse_duration
from patience.ratelimit.resources import validate_resource_id

ALGORITHMS = ("diophantine", "fixed-window", "gcra")
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A configuration problem; the message names file, key and the fix."""


class Settings(msgspec.Struct):
    socket_path: str | None = None
    log_level: str = "info"
    metrics_enabled: bool = True
    storage_path: str | None = None
    retention: float = 30 * 86400.0
    retention_count: int = 1_000_000
    max_connections: int = 512
    idle_timeout: float = 300.0
    client_ttl: float = 60.0
    peer_group: str | None = None
    default_algorithm: str = "diophantine"
    limits: dict[str, ResourceLimit] = {}


_DAEMON_KEYS = {
    "socket_path": str,
    "log_level": str,
    "metrics_enabled": bool,
    "storage_path": str,
    "retention_age": "duration",
    "retention": "duration",  # the first spelling, kept as an alias (as the shared schema does)
    "retention_count": int,
    "max_connections": int,
    "idle_timeout": "duration",
    "client_ttl": "duration",
    "peer_group": str,
}
_RATE_KEYS = {"default_algorithm", "coordination_enabled", "resources"}


def load(path: str | None) -> tuple[Settings, list[str]]:
    """Settings from `path` (defaults when None) and the warnings to show."""
    if path is None:
        return Settings(), []
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    return _from_tables(path, data)


def _from_tables(path: str, data: dict[str, Any]) -> tuple[Settings, list[str]]:
    warnings: list[str] = []
    values: dict[str, Any] = {}
    daemon = _table(path, data, "daemon")
    for key, value in daemon.items():
        kind = _DAEMON_KEYS.get(key)
        if kind is None:
            warnings.append(f"{path}: unknown key daemon.{key} (ignored)")
            continue
        values["retention" if key == "retention_age" else key] = _value(
            path, f"daemon.{key}", value, kind
        )
    rate = _table(path, data, "rate_limiting")
    warnings += [
        f"{path}: unknown key rate_limiting.{key} (ignored)"
        for key in rate
        if key not in _RATE_KEYS
    ]
    algorithm = rate.get("default_algorithm", "diophantine")
    values["default_algorithm"] = _algorithm(path, "rate_limiting.default_algorithm", algorithm)
    if "coordination_enabled" in rate:
        _value(path, "rate_limiting.coordination_enabled", rate["coordination_enabled"], bool)
    resources = _table(path, rate, "resources", "rate_limiting.")
    values["limits"] = {
        pattern: _limit(path, pattern, entry, values["default_algorithm"], warnings)
        for pattern, entry in resources.items()
    }
    settings = Settings(**values)
    _check(path, settings)
    return settings, warnings


def _table(path: str, data: dict[str, Any], key: str, prefix: str = "") -> dict[str, Any]:
    table = data.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {prefix}{key}: expected a table, got {_kind(table)}")
    return table


def _limit(
    path: str, pattern: str, entry: object, default: str, warnings: list[str]
) -> ResourceLimit:
    key = f'rate_limiting.resources."{pattern}"'
    try:
        validate_resource_id(pattern)
    except ValueError as exc:
        raise ConfigError(f"{path}: {key}: {exc}") from None
    if not isinstance(entry, dict):
        raise ConfigError(
            f'{path}: {key}: expected a table like {{ limit = 100, window = "1m" }}, '
            f"got {_kind(entry)}"
        )
    for extra in sorted(set(entry) - {"limit", "window", "algorithm"}):
        warnings.append(f"{path}: unknown key {key}.{extra} (ignored)")
    if "limit" not in entry or "window" not in entry:
        missing = "limit" if "limit" not in entry else "window"
        raise ConfigError(f'{path}: {key}: {missing} is missing (e.g. limit = 100, window = "1m")')
    limit = _value(path, f"{key}.limit", entry["limit"], int)
    window = _value(path, f"{key}.window", entry["window"], "duration")
    if window <= 0:
        raise ConfigError(f'{path}: {key}.window: must be longer than 0 (e.g. "1m")')
    algorithm = _algorithm(path, f"{key}.algorithm", entry.get("algorithm", default))
    return ResourceLimit(limit, window, algorithm)


def _value(path: str, key: str, value: object, kind: object) -> Any:
    if kind == "duration":
        if isinstance(value, int | float) and not isinstance(value, bool):
            if value < 0:
                raise ConfigError(f"{path}: {key}: {value} is negative (durations are 0 or more)")
            return float(value)
        if not isinstance(value, str):
            raise ConfigError(f'{path}: {key}: expected a duration like "1m", got {_kind(value)}')
        try:
            return parse_duration(value)
        except DurationError as exc:
            raise ConfigError(f"{path}: {key}: {exc}") from None
    if kind is int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"{path}: {key}: expected a whole number, got {_kind(value)}")
        if value < 1:
            raise ConfigError(f"{path}: {key}: {value} is too small (at least 1)")
        return value
    if not isinstance(value, kind):  # type: ignore[arg-type]
        expected = "true or false" if kind is bool else "a string"
        raise ConfigError(f"{path}: {key}: expected {expected}, got {_kind(value)}")
    return value


def _algorithm(path: str, key: str, value: object) -> str:
    if value not in ALGORITHMS:
        raise ConfigError(f"{path}: {key}: {_kind(value)} is not one of {', '.join(ALGORITHMS)}")
    return str(value)


def _check(path: str, settings: Settings) -> None:
    if settings.log_level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise ConfigError(
            f'{path}: daemon.log_level: "{settings.log_level}" is not one of {choices}'
        )
    if settings.idle_timeout <= 0:
        raise ConfigError(f'{path}: daemon.idle_timeout: must be longer than 0 (e.g. "5m")')


def _kind(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__
