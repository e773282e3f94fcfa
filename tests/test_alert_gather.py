"""The alerts' snapshot costs what is in use, not what is tracked: with many resources
tracked, each second looks at those asked for tokens since the last, those near their limit
or with waiters, and a bounded sweep of the rest (a real Coordinator, the clock a parameter)."""

from __future__ import annotations

from patience.config.resources import ResourceLimit
from patience.daemon.alerts.events import EventLog
from patience.daemon.alerts.gather import SWEEP, Gatherer
from patience.daemon.alerts.rules import evaluate
from patience.daemon.alerts.settings import AlertSettings, RuleSettings
from patience.daemon.coordinator import Coordinator
from patience.daemon.protocol import Acquire
from patience.settings import Limit

TRACKED = 5 * SWEEP


def world() -> tuple[Coordinator, Gatherer]:
    coord = Coordinator({"api:*": ResourceLimit(Limit(10, 3600.0))}, "diophantine", 60.0)
    gatherer = Gatherer(EventLog(60.0), EventLog(60.0), lambda rid: 0.9)
    return coord, gatherer


def looked_at(coord: Coordinator, gatherer: Gatherer, mono: float) -> dict[str, int]:
    snapshot = gatherer.snapshot(coord, None, None, 1e9 + mono, mono, 900.0)
    return {r.id: r.used for r in snapshot.limited}


def test_a_quiet_pass_looks_at_a_bounded_sweep_and_every_resource_in_turn() -> None:
    coord, gatherer = world()
    client = coord.connect("c", "repeater", 0.0)
    for i in range(TRACKED):
        assert coord.acquire(client, Acquire(resource_id=f"api:r{i}"), 0.0).granted  # type: ignore[union-attr]
    assert len(looked_at(coord, gatherer, 1.0)) == TRACKED  # just asked for: all looked at once
    seen: set[str] = set()
    for second in range(2, 2 + TRACKED // SWEEP):
        looked = looked_at(coord, gatherer, float(second))
        assert len(looked) <= SWEEP  # 10% in use: none is watched, only the sweep
        seen |= looked.keys()
    assert len(seen) == TRACKED  # the sweep reached every resource


def test_a_resource_asked_for_is_looked_at_at_once_and_watched_while_near_its_limit() -> None:
    coord, gatherer = world()
    client = coord.connect("c", "patience", 0.0)
    for i in range(TRACKED):
        coord.acquire(client, Acquire(resource_id=f"api:r{i}"), 0.0)
    for second in range(1, 4):
        looked_at(coord, gatherer, float(second))
    for _ in range(9):
        coord.acquire(client, Acquire(resource_id="api:r4321"), 4.0)
    for second in range(5, 5 + TRACKED // SWEEP + 2):  # longer than a whole sweep
        looked = looked_at(coord, gatherer, float(second))
        assert looked["api:r4321"] == 10
    snapshot = gatherer.snapshot(coord, None, None, 1e9 + 20.0, 20.0, 900.0)
    findings = evaluate(snapshot, AlertSettings(RuleSettings.default()).for_resource)
    [finding] = [f for f in findings if f.rule == "exhaustion"]
    assert finding.resource == "api:r4321" and finding.tools == {"patience"}
