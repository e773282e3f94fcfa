"""Alerts: the daemon watches what it already knows (limits in use, waiting requests, throttle
feedback, run outcomes in the rollups, registered rpr schedules, the Redis backend) and raises
one alert per rule and resource, with a life cycle (pending, firing, resolved), delivered to
its log, the `alerts` query, a command and an Alertmanager-style webhook.

The parts: settings (the [alerting] keys, per-resource overrides), rules (pure: a snapshot and
the time in, findings out), book (the life cycle), gather (the daemon's state as a snapshot),
notifiers and alertmanager (delivery), service (ties them to the daemon's loop), messages
(the `alerts` query). docs/alerting.md is the user's guide.
"""

from __future__ import annotations

__all__: list[str] = []
