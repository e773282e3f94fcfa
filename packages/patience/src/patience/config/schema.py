"""Every configuration key: its type, its default, and how a raw value is checked.

A key is named `section.name` (`patience.attempts`). Values are checked once, when read, into
the types the tools use: durations become float seconds, choices their canonical spelling.
A value that does not fit raises ValueError whose text says what was expected and what was
found; the caller prefixes the file (or variable) and the key.
"""

from __future__ import annotations

from patience.config.toml_text import value as toml_value
from patience.durations import DurationError, format_duration, parse_duration
from patience.numbers import boolean, refuse_foreign_digits, whole
from patience.settings import (
    ALGORITHMS,
    DEFAULT_ALGORITHM,
    FAIL_MODES,
    MAX_LIMIT,
    MAX_WINDOW,
    MIN_WINDOW,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def shown(raw: object) -> str:
    """A raw value as the user wrote it, for "got ..." in messages."""
    if isinstance(raw, dict):
        return "a table"
    if isinstance(raw, list):
        return "a list"
    if isinstance(raw, bool | int | float | str):
        return toml_value(raw)
    return str(raw)


class Kind:
    """One type of value: checked from a file (typed TOML/YAML), parsed from an environment
    variable (text), and written back as TOML."""

    expected = "a value"

    def check(self, raw: object) -> object:
        raise NotImplementedError

    def parse(self, text: str) -> object:
        return self.check(text)

    def render(self, value: object) -> str:
        return toml_value(value)

    def refuse(self, raw: object) -> ValueError:
        return ValueError(f"expected {self.expected}, got {shown(raw)}")


class Flag(Kind):
    expected = "true or false"

    def check(self, raw: object) -> object:
        if not isinstance(raw, bool):
            raise self.refuse(raw)
        return raw

    def parse(self, text: str) -> object:
        try:
            return boolean(text)
        except ValueError:
            raise self.refuse(text) from None


class Whole(Kind):
    def __init__(self, low: int, high: int | None = None) -> None:
        self.low, self.high = low, high
        self.expected = (
            f"a whole number, {low} or more"
            if high is None
            else f"a whole number from {low} to {high}"
        )

    def check(self, raw: object) -> object:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise self.refuse(raw)
        if raw < self.low or (self.high is not None and raw > self.high):
            raise self.refuse(raw)
        return raw

    def parse(self, text: str) -> object:
        refuse_foreign_digits(text, self.expected)
        try:
            number = whole(text.strip())
        except ValueError:
            raise self.refuse(text) from None
        return self.check(number)


class Seconds(Kind):
    """A duration written as text ("30s", "1h30m"); the number 0 is also accepted where 0 is
    allowed, since `timeout = 0` ("none") is natural to write."""

    def __init__(self, positive: bool, high: float | None = None, low: float | None = None) -> None:
        self.positive, self.high, self.low = positive, high, low
        self.expected = 'a duration such as "30s" or "1m30s"'
        if positive:
            self.expected = 'a duration greater than 0, such as "30s"'

    def check(self, raw: object) -> object:
        if not self.positive and not isinstance(raw, bool) and raw == 0:
            return 0.0
        if not isinstance(raw, str):
            raise self.refuse(raw)
        try:
            seconds = parse_duration(raw)
        except DurationError as exc:
            raise ValueError(f"expected a duration: {exc}") from None
        if self.positive and seconds <= 0:
            raise self.refuse(raw)
        if self.low is not None and seconds < self.low:
            raise ValueError(
                f"expected a duration of at least {format_duration(self.low)}, got {shown(raw)}"
            )
        if self.high is not None and seconds > self.high:
            raise ValueError(
                f"expected a duration of at most {format_duration(self.high)}, got {shown(raw)}"
            )
        return seconds

    def render(self, value: object) -> str:
        assert isinstance(value, float)
        return toml_value(format_duration(value))


class Choice(Kind):
    """One of a fixed set of words (case-insensitive); aliases map to a canonical word."""

    def __init__(self, *words: str, aliases: Mapping[str, str] | None = None) -> None:
        self.names = {w: w for w in words} | dict(aliases or {})
        self.expected = "one of " + ", ".join(dict.fromkeys(self.names.values()))

    def check(self, raw: object) -> object:
        if isinstance(raw, str) and raw.strip().lower() in self.names:
            return self.names[raw.strip().lower()]
        raise self.refuse(raw)


class Strategy(Kind):
    """A `patience` strategy name or alias; the list lives with the strategies (imported
    only when a strategy is configured)."""

    def check(self, raw: object) -> object:
        from patience.backoff import STRATEGY_NAMES

        return Choice(aliases=STRATEGY_NAMES).check(raw)


class Text(Kind):
    expected = "a non-empty string"

    def check(self, raw: object) -> object:
        if not isinstance(raw, str) or not raw:
            raise self.refuse(raw)
        return raw


class Path(Text):
    expected = "a path (a non-empty string)"

    def check(self, raw: object) -> object:
        import os.path

        return os.path.expanduser(str(super().check(raw)))


class RedisUrl(Text):
    """One Redis, or Sentinel's `redis+sentinel://` (the grammar: daemon/redis_connect.py)."""

    expected = "a Redis URL (redis://HOST:6379/0, rediss://... with TLS, unix:///PATH)"

    def check(self, raw: object) -> object:
        from patience.daemon.redis_connect import check_url

        text = str(super().check(raw))
        check_url(text)  # a ValueError says what is wrong
        return text


class ListenAddress(Text):
    expected = "ADDR:PORT, such as 127.0.0.1:9464"

    def check(self, raw: object) -> object:
        from patience.daemon.http.listen import parse_listen

        text = str(super().check(raw))
        parse_listen(text)  # a ValueError says what is wrong
        return text


class Pattern(Text):
    expected = "a regular expression (a non-empty string)"

    def check(self, raw: object) -> object:
        from patience.conditions import PatternError, compile_pattern

        text = str(super().check(raw))
        try:
            compile_pattern(text, "")  # the option name it prefixes is empty: the caller's
        except PatternError as exc:
            raise ValueError(str(exc).removeprefix(": ")) from None
        return text


class Number(Kind):
    """A number (whole or decimal) from `low` to `high`, as a float."""

    def __init__(self, low: float, high: float | None = None) -> None:
        self.low, self.high = low, high
        self.expected = (
            f"a number, {low:g} or more" if high is None else f"a number from {low:g} to {high:g}"
        )

    def check(self, raw: object) -> object:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise self.refuse(raw)
        if raw < self.low or (self.high is not None and raw > self.high):
            raise self.refuse(raw)
        return float(raw)

    def parse(self, text: str) -> object:
        try:
            return self.check(float(text))
        except ValueError:
            raise self.refuse(text) from None


class Argv(Kind):
    """A command to run, as its argument list (no shell)."""

    expected = 'a command as a list of strings, such as ["notify-send", "patience"]'

    def check(self, raw: object) -> object:
        if not isinstance(raw, list) or not raw or not all(isinstance(a, str) for a in raw):
            raise self.refuse(raw)
        if not raw[0]:
            raise self.refuse(raw)
        return list(raw)

    def parse(self, text: str) -> object:
        import shlex

        return self.check(shlex.split(text))

    def render(self, value: object) -> str:
        assert isinstance(value, list)
        return "[" + ", ".join(toml_value(a) for a in value) + "]"


class HttpUrl(Text):
    expected = "an http:// or https:// URL, such as http://127.0.0.1:9093/hook"

    def check(self, raw: object) -> object:
        from urllib.parse import urlsplit

        text = str(super().check(raw))
        try:
            parts = urlsplit(text)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            raise self.refuse(raw) from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise self.refuse(raw)
        return text


class Key:
    """One setting. `fallback` names the shared key a tool-specific key inherits from when it
    is not set in the same or a higher source (`repeater.log_level` → `daemon.log_level`)."""

    __slots__ = ("default", "fallback", "kind", "name")

    def __init__(
        self, name: str, kind: Kind, default: object = None, fallback: str | None = None
    ) -> None:
        self.name, self.kind, self.default, self.fallback = name, kind, default, fallback


LOG_LEVEL = Choice("debug", "info", "warning", "error", aliases={"warn": "warning"})
# While the daemon is away (settings.FAIL_MODES); "open", the first spelling of fail-open,
# is the share.
FALLBACK = Choice(*FAIL_MODES, aliases={"open": "share"})
_FLAG = Flag()
_NONNEG = Seconds(positive=False)
_POSITIVE = Seconds(positive=True)
_PATH = Path()
_PORT = Whole(1, 65535)
_ATTEMPTS = Whole(1, 1000)

# In the order `patience config show` prints them. Defaults mirror the tools' built-in ones.
KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key("daemon.socket_path", _PATH),  # None: patience-daemon picks a per-user path
        Key("daemon.log_level", LOG_LEVEL, "info"),
        Key("daemon.metrics_enabled", _FLAG, True),
        Key("daemon.storage_path", _PATH),  # None: under the user's state directory
        Key("daemon.retention_age", _POSITIVE, 7 * 86400.0),  # metrics records older go
        Key("daemon.minute_rollup_retention", _POSITIVE, 30 * 86400.0),  # minute rollups
        Key("daemon.hour_rollup_retention", _POSITIVE, 365 * 86400.0),  # hour rollups
        Key("daemon.retention_count", Whole(1), 1_000_000),  # and beyond this many, oldest go
        Key("daemon.max_connections", Whole(1), 512),  # the excess is answered with an error
        Key("daemon.idle_timeout", _POSITIVE, 300.0),  # a silent connection is closed after
        Key("daemon.line_timeout", _POSITIVE, 10.0),  # an unfinished request line is cut after
        Key("daemon.client_ttl", _NONNEG, 60.0),  # a client unseen this long is forgotten
        Key("daemon.peer_group", Text()),  # a group whose members may also connect
        Key("daemon.backend", Choice("memory", "redis"), "memory"),  # where limit state lives
        Key("daemon.redis_url", RedisUrl()),  # the Redis of backend = "redis"
        Key("daemon.redis_cluster", _FLAG, False),  # redis_url is a Redis Cluster node's
        Key("daemon.redis_clock", Choice("daemon", "redis"), "daemon"),  # whose time counts
        Key("daemon.http_listen", ListenAddress()),  # None: no HTTP (docs/http-api.md)
        Key("daemon.http_token", Text()),  # required off loopback: Authorization: Bearer
        Key("daemon.http_hosts", Text()),  # Host names accepted besides IPs and localhost
        Key("daemon.http_max_resources", Whole(1, 10_000), 100),  # named in /metrics labels
        Key("rate_limiting.default_algorithm", Choice(*ALGORITHMS), DEFAULT_ALGORITHM),
        Key("rate_limiting.coordination_enabled", _FLAG, True),
        Key("rate_limiting.fail_mode", FALLBACK, "share"),  # the daemon away: see FALLBACK
        Key("repeater.default_interval", _POSITIVE),
        Key("repeater.default_timeout", _NONNEG, 0.0),  # 0: no timeout
        Key("repeater.continue_on_error", _FLAG, True),
        Key("repeater.daemon_enabled", _FLAG, False),
        Key("repeater.daemon_socket", _PATH, fallback="daemon.socket_path"),
        Key("repeater.daemon_timeout", _POSITIVE, 5.0),
        Key("repeater.daemon_auto_start", _FLAG, True),
        Key("repeater.resource_detection", _FLAG, True),
        Key("repeater.max_retries", Whole(0), 0),
        Key("repeater.log_level", LOG_LEVEL, fallback="daemon.log_level"),
        Key("repeater.metrics_enabled", _FLAG, True),
        Key("repeater.metrics_port", _PORT, 9090),
        Key("repeater.health_enabled", _FLAG, False),
        Key("repeater.health_check_port", _PORT, 8080),
        Key("patience.default_strategy", Strategy(), "exponential"),
        Key("patience.attempts", _ATTEMPTS, 3),
        Key("patience.timeout", _NONNEG, 0.0),  # 0: no timeout
        Key("patience.success_pattern", Pattern()),
        Key("patience.failure_pattern", Pattern()),
        Key("patience.case_insensitive", _FLAG, False),
        Key("patience.daemon_enabled", _FLAG, False),
        Key("patience.daemon_socket", _PATH, fallback="daemon.socket_path"),
        Key("patience.daemon_timeout", _POSITIVE, 5.0),
        Key("patience.daemon_auto_start", _FLAG, True),
        Key("patience.resource_detection", _FLAG, True),
        Key("patience.log_level", LOG_LEVEL, fallback="daemon.log_level"),
        # [alerting] (docs/alerting.md); the rule keys may be overridden per resource.
        Key("alerting.enabled", _FLAG, True),  # false: no alerts (per resource: none for it)
        Key("alerting.command", Argv()),  # run with each alert as JSON on stdin
        Key("alerting.webhook", HttpUrl()),  # POSTed Alertmanager's webhook JSON
        Key("alerting.missed_schedule_grace", _POSITIVE, 30.0),
        Key("alerting.exhaustion_utilisation", Number(0.0, 1.0), 0.9),
        Key("alerting.exhaustion_for", _NONNEG, 300.0),
        Key("alerting.exhaustion_wait", _POSITIVE, 60.0),
        Key("alerting.throttle_count", Whole(1), 3),
        Key("alerting.throttle_window", _POSITIVE, 300.0),
        Key("alerting.degradation_window", Seconds(positive=True, low=60.0, high=86400.0), 900.0),
        Key("alerting.success_rate_min", Number(0.0, 1.0), 0.5),
        Key("alerting.success_rate_drop", Number(0.0, 1.0), 0.2),
        Key("alerting.latency_factor", Number(1.0), 2.0),
        Key("alerting.degradation_min_runs", Whole(1), 10),
        Key("alerting.fallback_window", _POSITIVE, 300.0),
        Key("alerting.min_hold", _NONNEG, 60.0),
    )
}

# Other names accepted for a key: `max_attempts` (the YAML layout's), the Go rpr
# `[defaults] timeout`, and `retention`, the daemon's first spelling.
ALIASES = {
    "daemon.retention": "daemon.retention_age",
    "patience.max_attempts": "patience.attempts",
    "repeater.timeout": "repeater.default_timeout",
}

SECTIONS = ("daemon", "rate_limiting", "repeater", "patience", "alerting")

# The Go `patience` file was flat: these top-level keys mean `[patience]` ones.
FLAT_KEYS = (
    "attempts",
    "timeout",
    "success_pattern",
    "failure_pattern",
    "case_insensitive",
    "daemon_enabled",
    "daemon_socket",
    "daemon_timeout",
    "daemon_auto_start",
)

# The Go `rpr` file's top-level sections: their keys mean `[repeater]` ones.
LEGACY_RPR_SECTIONS = {
    "defaults": ("timeout", "max_retries", "log_level"),
    "observability": ("metrics_enabled", "metrics_port", "health_enabled", "health_check_port"),
}

# The fields of one `[rate_limiting.resources]` entry: limit and window together, or neither
# (an entry may carry only how its limit learns: docs/adaptive-limits.md).
RESOURCE_FIELDS: dict[str, Kind] = {
    "limit": Whole(1, MAX_LIMIT),
    "window": Seconds(positive=True, low=MIN_WINDOW, high=MAX_WINDOW),
    "algorithm": Choice(*ALGORITHMS),
    "fallback": FALLBACK,
}
LEARNING_FIELDS: dict[str, Kind] = {
    "adaptive": _FLAG,
    "decrease": Number(0.01, 0.99),
    "increase": Number(0.001, 10_000),
    "floor": Whole(1, MAX_LIMIT),
    "adapt_to_load": _FLAG,
    "throttle_pattern": Pattern(),
    "throttle_exit": Whole(1, 255),
}


def canonical(name: str) -> str | None:
    """The key a dotted name stands for (resolving aliases), or None if there is none."""
    name = ALIASES.get(name, name)
    return name if name in KEYS else None


def default(name: str) -> object:
    key = KEYS[name]
    return KEYS[key.fallback].default if key.fallback else key.default


def render(name: str, value: object) -> str:
    """A checked value as TOML text."""
    return KEYS[name].kind.render(value)
