"""The [alerting] settings as the rules use them: the defaults of every rule, and per-resource
overrides from `[alerting.resources."<pattern>"]`, matched as rate-limit patterns are (`*`,
`?`; the exact id first, else the pattern with the most literal characters)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from patience.config import Config
from patience.config.alerting import FIELDS
from patience.config.resources import find_pattern

__all__ = ["AlertSettings", "RuleSettings"]

# A resource whose settings are asked for often: the matches are remembered, up to this many.
_CACHE = 10_000


@dataclass(frozen=True, slots=True)
class RuleSettings:
    """Every per-resource setting: one field per key of patience.config.alerting.FIELDS
    (docs/alerting.md has each one's meaning; the defaults are the configuration's)."""

    enabled: bool
    missed_schedule_grace: float
    exhaustion_utilisation: float
    exhaustion_for: float
    exhaustion_wait: float
    throttle_count: int
    throttle_window: float
    success_rate_min: float
    success_rate_drop: float
    latency_factor: float
    degradation_min_runs: int
    fallback_window: float
    min_hold: float

    @classmethod
    def default(cls) -> RuleSettings:
        """The settings when nothing is configured (the keys' defaults)."""
        from patience.config.schema import default

        return cls(**{name: default(f"alerting.{name}") for name in FIELDS})  # type: ignore[arg-type]


class AlertSettings:
    """`command` and `webhook` are the notifiers' (None: not used); `degradation_window` is
    the span of the recent success rate and p95, for every resource."""

    def __init__(
        self,
        defaults: RuleSettings,
        overrides: dict[str, RuleSettings] | None = None,
        command: list[str] | None = None,
        webhook: str | None = None,
        degradation_window: float = 900.0,
    ) -> None:
        self.defaults = defaults
        self.overrides = overrides or {}
        self.command = command
        self.webhook = webhook
        self.degradation_window = degradation_window
        self._matched: dict[str, RuleSettings] = {}

    @classmethod
    def from_config(cls, config: Config) -> AlertSettings:
        values = {name: config.get(f"alerting.{name}") for name in FIELDS}
        defaults = RuleSettings(**values)  # type: ignore[arg-type]
        overrides = {
            pattern: dataclasses.replace(defaults, **fields)  # type: ignore[arg-type]
            for pattern, fields in config.alert_overrides().items()
        }
        command = config.get("alerting.command")
        window = config.seconds("alerting.degradation_window")
        assert command is None or isinstance(command, list)
        assert window is not None
        return cls(defaults, overrides, command, config.text("alerting.webhook"), window)

    def for_resource(self, resource_id: str) -> RuleSettings:
        found = self._matched.get(resource_id)
        if found is None:
            pattern = find_pattern(self.overrides, resource_id)
            found = self.defaults if pattern is None else self.overrides[pattern]
            if len(self._matched) >= _CACHE:
                self._matched.clear()
            self._matched[resource_id] = found
        return found
