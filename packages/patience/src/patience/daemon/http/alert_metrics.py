"""The alerts in `/metrics`, from the reply of the `alerts` query (docs/alerting.md):
`patience_alerts_firing{rule,resource}` counts the alerts firing now (one per rule and
resource, so 1, except under `resource="other"`, where the resources past the label cap are
folded and their alerts summed), and each notifier's deliveries, failed tries and drops as
counters, its queue as a gauge. Pending and resolved alerts are not samples: a rule on
`patience_alerts_firing` pages only for what the daemon itself would notify.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from patience.daemon.totals import LabelCap

__all__ = ["alert_metrics"]

PREFIX = "patience_"
# The notifier's counter in the `alerts` reply, the metric's name and its help.
NOTIFIER_COUNTERS = (
    ("sent", "alert_notifications_sent", "Alert notifications delivered, per notifier."),
    ("failures", "alert_notification_failures", "Failed tries to deliver an alert notification."),
    ("dropped", "alert_notifications_dropped", "Alert notifications given up on or pushed out."),
)


def alert_metrics(reply: Mapping[str, Any], cap: LabelCap) -> Iterator[Metric]:
    """The families for `reply` (the `alerts` query's answer); resource labels through `cap`."""
    firing = GaugeMetricFamily(
        PREFIX + "alerts_firing",
        'Alerts firing now, per rule and resource (resource="other": the folded ones summed).',
        labels=["rule", "resource"],
    )
    counts = Counter(
        (str(alert["rule"]), cap.label(str(alert["resource"])))
        for alert in reply.get("alerts", [])
        if alert.get("status") == "firing"
    )
    for (rule, resource), count in sorted(counts.items()):
        firing.add_metric([rule, resource], float(count))
    yield firing
    notifiers = reply.get("notifiers", [])
    for key, name, help_text in NOTIFIER_COUNTERS:
        family = CounterMetricFamily(PREFIX + name, help_text, labels=["notifier"])
        for stats in notifiers:
            family.add_metric([str(stats["notifier"])], float(stats[key]))
        yield family
    queued = GaugeMetricFamily(
        PREFIX + "alert_notifications_queued",
        "Alert notifications waiting for delivery, per notifier.",
        labels=["notifier"],
    )
    for stats in notifiers:
        queued.add_metric([str(stats["notifier"])], float(stats["queued"]))
    yield queued
