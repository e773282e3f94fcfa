"""The alert rules, their life cycle, settings, schedules followed, the webhook's message and
the notifiers' outbox, in-process with the clock as a parameter (docs/alerting.md)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alert_support import check_alertmanager
from patience.daemon.alerts.alertmanager import payload, rfc3339
from patience.daemon.alerts.book import Book
from patience.daemon.alerts.notifiers import Outbox
from patience.daemon.alerts.rules import COORDINATION_RESOURCE, Finding, evaluate
from patience.daemon.alerts.schedules import VANISHED_KEEP, ScheduleWatch
from patience.daemon.alerts.settings import AlertSettings, RuleSettings
from patience.daemon.alerts.snapshot import Event, Limited, Outcomes, Schedule, Snapshot
from patience.daemon.protocol import ScheduleConfig
from patience.daemon.registry import Client

NOW = 1_800_000_000.0
DEFAULT = RuleSettings.default()


def found(snapshot: Snapshot, settings: AlertSettings | None = None) -> list[Finding]:
    return evaluate(snapshot, (settings or AlertSettings(DEFAULT)).for_resource)


def test_defaults_are_the_documented_ones() -> None:
    assert (
        RuleSettings(
            enabled=True,
            missed_schedule_grace=30.0,
            exhaustion_utilisation=0.9,
            exhaustion_for=300.0,
            exhaustion_wait=60.0,
            throttle_count=3,
            throttle_window=300.0,
            success_rate_min=0.5,
            success_rate_drop=0.2,
            latency_factor=2.0,
            degradation_min_runs=10,
            fallback_window=300.0,
            min_hold=60.0,
        )
        == DEFAULT
    )


# ---- exhaustion ------------------------------------------------------------------------------


def limited(used: int, waiting: int = 0, oldest: float = 0.0) -> Limited:
    return Limited(
        "api:x", 10, 60.0, used, waiting, oldest, {"rpr-1": "repeater", "p-2": "patience"}
    )


def test_exhaustion_from_utilisation_waits_exhaustion_for() -> None:
    (finding,) = found(Snapshot(NOW, limited=[limited(9)]))
    assert finding.rule == "exhaustion" and finding.resource == "api:x"
    assert finding.hold_for == 300.0
    assert finding.tools == {"repeater", "patience"} and finding.clients == {"rpr-1", "p-2"}
    assert "90% of its limit (10 per 1m) in use" in finding.summary
    assert found(Snapshot(NOW, limited=[limited(8)])) == []


def test_exhaustion_from_a_long_wait_fires_at_once() -> None:
    (finding,) = found(Snapshot(NOW, limited=[limited(2, waiting=3, oldest=61.0)]))
    assert finding.hold_for == 0.0
    assert finding.summary == "3 requests waiting, the oldest for 1m1s (more than 1m)"
    assert found(Snapshot(NOW, limited=[limited(2, waiting=3, oldest=59.0)])) == []


def test_a_resource_override_changes_its_threshold_only() -> None:
    settings = AlertSettings(
        DEFAULT, {"api:*": dataclasses.replace(DEFAULT, exhaustion_utilisation=0.5)}
    )
    other = Limited("db:y", 10, 60.0, 5, 0, 0.0, {})
    findings = found(Snapshot(NOW, limited=[limited(5), other]), settings)
    assert [f.resource for f in findings] == ["api:x"]


def test_enabled_false_silences_a_resource() -> None:
    settings = AlertSettings(DEFAULT, {"api:x": dataclasses.replace(DEFAULT, enabled=False)})
    assert found(Snapshot(NOW, limited=[limited(10)]), settings) == []


def test_the_exact_id_beats_a_pattern_and_the_longer_pattern_the_shorter() -> None:
    a, b, c = (dataclasses.replace(DEFAULT, min_hold=h) for h in (1.0, 2.0, 3.0))
    settings = AlertSettings(DEFAULT, {"api:*": a, "api:ext:*": b, "api:ext:x": c})
    assert settings.for_resource("api:ext:x").min_hold == 3.0
    assert settings.for_resource("api:ext:y").min_hold == 2.0
    assert settings.for_resource("api:z").min_hold == 1.0
    assert settings.for_resource("db").min_hold == 60.0


# ---- throttled -------------------------------------------------------------------------------


def test_throttled_counts_the_signals_within_the_window() -> None:
    events = [
        Event(NOW - 400, "api:x", "repeater", "old"),  # outside the 5m window
        Event(NOW - 200, "api:x", "repeater", "rpr-1"),
        Event(NOW - 100, "api:x", "patience", "p-2"),
    ]
    assert found(Snapshot(NOW, throttles=events)) == []
    events.append(Event(NOW - 1, "api:x", "repeater", "rpr-1"))
    (finding,) = found(Snapshot(NOW, throttles=events))
    assert finding.rule == "throttled"
    assert finding.tools == {"repeater", "patience"} and finding.clients == {"rpr-1", "p-2"}
    assert finding.summary == "3 throttle signals in the last 5m (at least 3)"


# ---- degradation -----------------------------------------------------------------------------


def outcomes(
    runs: int, ok: int, p95: float | None, base: int, base_ok: int, base_p95: float | None
) -> Outcomes:
    return Outcomes("api:x", runs, ok, p95, base, base_ok, base_p95, {"rpr-1": "repeater"})


@pytest.mark.parametrize(
    ("figures", "summary"),
    [
        ((20, 8, 0.1, 0, 0, None), "success rate 40% over the last 15m, below 50%"),
        (
            (20, 14, 0.1, 100, 95, 0.1),
            "success rate 70% over the last 15m, 25 points below the previous 24h (95%)",
        ),
        (
            (20, 20, 0.5, 100, 100, 0.2),
            "p95 duration 500ms over the last 15m, 2.5x the previous 24h (200ms)",
        ),
        ((20, 16, 0.3, 100, 95, 0.2), None),  # 15 points, 1.5x: within bounds
        ((9, 0, 9.0, 100, 100, 0.1), None),  # too few runs to judge
        ((20, 15, 9.0, 9, 9, 0.1), None),  # too few runs before to compare with
    ],
)
def test_degradation(figures: tuple[Any, ...], summary: str | None) -> None:
    findings = found(Snapshot(NOW, outcomes=[outcomes(*figures)]))
    assert [f.summary for f in findings] == ([summary] if summary else [])
    assert all(f.rule == "degradation" and f.clients == {"rpr-1"} for f in findings)


# ---- missed schedule -------------------------------------------------------------------------


def test_a_schedule_is_late_after_its_period_and_grace() -> None:
    on_time = Schedule("job", "rpr-1", "repeater", 60.0, NOW - 90.0, None)
    late = Schedule("job", "rpr-2", "repeater", 60.0, NOW - 91.0, NOW - 50.0)
    assert found(Snapshot(NOW, schedules=[on_time])) == []
    (finding,) = found(Snapshot(NOW, schedules=[on_time, late]))
    assert finding.rule == "missed_schedule" and finding.clients == {"rpr-2"}
    assert finding.summary.startswith("rpr-2 started no run for 1m31s (every 1m, grace 30s)")
    assert "and has had no connection since" in finding.summary


# ---- coordination ----------------------------------------------------------------------------


def test_coordination_degraded_by_redis_or_fallbacks() -> None:
    snapshot = Snapshot(
        NOW,
        fallbacks=[Event(NOW - 10, "api:x", "patience", "p-2")],
        redis_url="redis://r:6379/0",
        redis_down_since=NOW - 5,
    )
    fallback, redis = found(snapshot)  # in resource order
    assert redis.resource == COORDINATION_RESOURCE and "Redis at redis://r:6379/0" in redis.summary
    assert fallback.resource == "api:x" and fallback.clients == {"p-2"}
    assert found(Snapshot(NOW, fallbacks=[Event(NOW - 301, "api:x", "patience", "p")])) == []


# ---- the life cycle --------------------------------------------------------------------------


def finding(hold_for: float = 0.0, clients: frozenset[str] = frozenset({"c"})) -> Finding:
    return Finding("exhaustion", "api:x", "full", frozenset({"repeater"}), clients, hold_for)


def hold(seconds: float) -> Any:
    return lambda resource: seconds


def test_pending_fires_once_its_condition_held_for_hold_for() -> None:
    book = Book()
    assert book.update([finding(5.0)], NOW, hold(0)) == []
    assert [a["status"] for a in book.views(False)] == ["pending"]
    assert book.update([finding(5.0)], NOW + 4.9, hold(0)) == []
    (fired,) = book.update([finding(5.0)], NOW + 5.0, hold(0))
    assert fired["status"] == "firing" and fired["starts_at"] == NOW + 5.0
    assert book.firing() == {("exhaustion", "api:x"): 1}


def test_a_pending_alert_whose_condition_clears_is_dropped_unseen() -> None:
    book = Book()
    book.update([finding(5.0)], NOW, hold(0))
    assert book.update([], NOW + 1, hold(0)) == []
    assert book.views(True) == []


def test_min_hold_keeps_a_flapping_alert_firing_once() -> None:
    book = Book()
    changes = []
    for second in range(20):  # the condition holds one second in two
        findings = [finding(clients=frozenset({f"c{second}"}))] if second % 2 == 0 else []
        changes += book.update(findings, NOW + second, hold(3.0))
    assert [c["status"] for c in changes] == ["firing"]
    for second in range(20, 23):
        changes += book.update([], NOW + second, hold(3.0))
    assert [c["status"] for c in changes] == ["firing", "resolved"]
    resolved = changes[-1]
    assert resolved["ends_at"] == NOW + 22 and resolved["starts_at"] == NOW
    assert resolved["clients"] == sorted(f"c{s}" for s in range(0, 20, 2))  # all who took part
    assert [a["status"] for a in book.views(True)] == ["resolved"]
    assert book.views(False) == [] and book.firing() == {}


def test_after_resolving_a_new_alert_opens() -> None:
    book = Book()
    book.update([finding()], NOW, hold(1))
    book.update([], NOW + 1, hold(1))
    book.update([], NOW + 2, hold(1))
    (again,) = book.update([finding()], NOW + 3, hold(1))
    assert again["status"] == "firing" and again["starts_at"] == NOW + 3
    assert [a["status"] for a in book.views(True)] == ["resolved", "firing"]


@given(st.lists(st.booleans(), max_size=60), st.integers(0, 5), st.integers(0, 4))
def test_notifications_alternate_and_each_alert_fires_at_least_min_hold(
    conditions: list[bool], min_hold: int, hold_for: int
) -> None:
    book = Book()
    changes = []
    for second, holds in enumerate([*conditions, *[False] * 12]):
        changes += book.update([finding(hold_for)] if holds else [], float(second), hold(min_hold))
    statuses = [c["status"] for c in changes]
    assert statuses == ["firing", "resolved"] * (len(statuses) // 2)  # ends resolved, no repeats
    for fired, resolved in zip(changes[::2], changes[1::2], strict=True):
        assert resolved["ends_at"] - fired["starts_at"] >= max(min_hold, 1)
    assert len(book.active) == 0


# ---- schedules followed ----------------------------------------------------------------------


def scheduled(client_id: str, interval: float = 10.0, kind: str = "interval") -> Client:
    client = Client(client_id, "repeater", 0.0)
    client.connections = 1
    use = client.use("job")
    use.schedule = ScheduleConfig(
        type=kind, interval=interval, count=5 if kind == "count" else None
    )  # type: ignore[arg-type]
    return client


def test_a_run_is_seen_as_its_counters_move() -> None:
    watch, client = ScheduleWatch(), scheduled("rpr-1")
    (first,) = watch.observe({"rpr-1": client}, NOW, 100.0)
    assert first == Schedule("job", "rpr-1", "repeater", 10.0, NOW, None)
    (same,) = watch.observe({"rpr-1": client}, NOW + 5, 105.0)
    assert same.last_start == NOW
    client.uses["job"].tokens += 1
    (moved,) = watch.observe({"rpr-1": client}, NOW + 6, 106.0)
    assert moved.last_start == NOW + 6


def test_an_unregistered_or_ended_schedule_is_no_longer_followed() -> None:
    watch, client = ScheduleWatch(), scheduled("rpr-1")
    watch.observe({"rpr-1": client}, NOW, 100.0)
    watch.unregister("rpr-1", "job")
    client.uses["job"].schedule = None
    assert watch.observe({"rpr-1": client}, NOW + 1, 101.0) == []
    counted = scheduled("rpr-2", kind="count")
    counted.uses["job"].schedule_ends = 150.0
    assert len(watch.observe({"rpr-2": counted}, NOW, 100.0)) == 1
    assert watch.observe({"rpr-2": counted}, NOW + 60, 160.0) == []


def test_a_vanished_client_stays_followed_until_replaced() -> None:
    watch, gone = ScheduleWatch(), scheduled("rpr-1")
    watch.observe({"rpr-1": gone}, NOW, 100.0)
    gone.connections = 0
    (left,) = watch.observe({"rpr-1": gone}, NOW + 1, 101.0)
    assert left.gone_since == NOW + 1
    (forgotten,) = watch.observe({}, NOW + 100, 200.0)  # the registry forgot it
    assert forgotten.client == "rpr-1" and forgotten.gone_since == NOW + 1
    new = scheduled("rpr-2")
    watch.observe({"rpr-2": new}, NOW + 101, 201.0)
    new.uses["job"].executions += 1
    followed = watch.observe({"rpr-2": new}, NOW + 102, 202.0)
    assert [s.client for s in followed] == ["rpr-2"]


def test_a_vanished_client_is_forgotten_after_a_day() -> None:
    watch = ScheduleWatch()
    watch.observe({"rpr-1": scheduled("rpr-1")}, NOW, 100.0)
    assert len(watch.observe({}, NOW + VANISHED_KEEP, 100.0 + VANISHED_KEEP)) == 1
    assert watch.observe({}, NOW + VANISHED_KEEP + 1, 101.0 + VANISHED_KEEP) == []


# ---- the webhook's message -------------------------------------------------------------------


def test_the_webhook_message_is_alertmanagers_version_4() -> None:
    view = {
        "rule": "throttled",
        "resource": "api:x",
        "status": "firing",
        "starts_at": NOW,
        "ends_at": None,
        "tools": ["patience", "repeater"],
        "clients": ["p-2", "rpr-1"],
        "summary": "3 throttle signals",
    }
    firing = payload(view, "http://127.0.0.1:9464/")
    check_alertmanager(firing)
    (alert,) = firing["alerts"]  # type: ignore[misc]
    assert alert["labels"]["alertname"] == "patience_throttled"
    assert alert["labels"]["resource"] == "api:x"
    assert alert["annotations"]["tools"] == "patience, repeater"
    assert alert["startsAt"] == "2027-01-15T08:00:00.000Z" == rfc3339(NOW)
    assert firing["groupKey"] == '{}:{alertname="patience_throttled", resource="api:x"}'
    resolved = payload(dict(view, status="resolved", ends_at=NOW + 60))
    check_alertmanager(resolved)
    assert resolved["alerts"][0]["fingerprint"] == alert["fingerprint"]  # type: ignore[index]


# ---- the outbox ------------------------------------------------------------------------------


def test_a_failed_delivery_is_retried_with_backoff_and_counted() -> None:
    tries: list[dict[str, object]] = []

    async def flaky(alert: dict[str, object]) -> None:
        tries.append(alert)
        if len(tries) < 3:
            raise RuntimeError("receiver down")

    async def main() -> dict[str, object]:
        outbox = Outbox("test", flaky, first_delay=0.01)
        outbox.start()
        outbox.put({"n": 1})
        outbox.put({"n": 2})
        while outbox.queue:
            await asyncio.sleep(0.01)
        await outbox.close()
        return outbox.stats()

    stats = asyncio.run(main())
    assert [t["n"] for t in tries] == [1, 1, 1, 2]  # in order, the first until it went through
    assert stats["sent"] == 2 and stats["failures"] == 2 and stats["dropped"] == 0
    assert stats["last_error"] == "receiver down"


def test_a_full_outbox_drops_its_oldest_and_a_slow_send_times_out() -> None:
    async def slow(alert: dict[str, object]) -> None:
        await asyncio.sleep(10)

    async def main() -> dict[str, object]:
        outbox = Outbox("slow", slow, capacity=2, first_delay=0.01, timeout=0.05)
        for n in range(3):
            outbox.put({"n": n})
        assert [a["n"] for a in outbox.queue] == [1, 2]
        outbox.start()
        await asyncio.sleep(0.3)
        await outbox.close()
        return outbox.stats()

    stats = asyncio.run(main())
    assert stats["dropped"] == 1 and stats["sent"] == 0 and stats["failures"] >= 2
    assert stats["last_error"] == "no answer within 0.05s"
