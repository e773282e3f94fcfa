"""Alerts as a service of the daemon: every EVERY seconds on the daemon's loop, a snapshot of
its state goes through the rules into the book, and what fired or resolved goes to the log
and the notifiers. It also answers the `alerts` query and `unregister_schedule`, and notes
which clients report grants made on their fallback (`report_grants`).

For the HTTP side: `alerts(include_resolved)` (plain dicts, as `alerts --json` prints them),
`firing()` (patience_alerts_firing's samples) and `notifier_stats()`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from patience.config import Config
from patience.daemon import protocol
from patience.daemon.alerts.book import Book
from patience.daemon.alerts.events import EventLog
from patience.daemon.alerts.gather import Backend, Gatherer, Tracked
from patience.daemon.alerts.messages import (
    Alerts,
    AlertsResponse,
    UnregisterSchedule,
    UnregisterScheduleResponse,
)
from patience.daemon.alerts.notifiers import Outbox, command_sender, webhook_sender
from patience.daemon.alerts.rules import evaluate
from patience.daemon.alerts.settings import AlertSettings
from patience.daemon.framing import Session
from patience.daemon.logthrottle import LogThrottle
from patience.daemon.protocol import ReportGrants
from patience.daemon.registry import Client
from patience.daemon.storage import MetricsStore

__all__ = ["EVERY", "AlertService", "Watched"]

log = logging.getLogger("patience.daemon")

EVERY = 1.0  # seconds between two evaluations


class Watched(Protocol):
    """What alerts read of the daemon (patience.daemon.lifecycle.Daemon)."""

    @property
    def coordinator(self) -> Tracked: ...

    @property
    def store(self) -> MetricsStore | None: ...

    @property
    def redis(self) -> Backend | None: ...


class Handling(Protocol):
    """The request handlers' table and whom a connection speaks for (handlers.Handlers)."""

    table: dict[type, Callable[[Session, Any], Any]]

    def client_for(self, session: Session) -> Client: ...


class AlertService:
    def __init__(self, daemon: Watched, config: Config) -> None:
        self.daemon = daemon
        self.settings = AlertSettings.from_config(config)
        self.book = Book()
        self.throttles = EventLog(self._keep())
        self.fallbacks = EventLog(self._keep())
        self.gatherer = Gatherer(self.throttles, self.fallbacks, self._near)
        self.outboxes = _outboxes(self.settings, config)
        self._said = LogThrottle(log)
        self._task: asyncio.Task[None] | None = None

    def _near(self, resource_id: str) -> float:
        """The share of its limit in use from which a resource is watched every second."""
        return self.settings.for_resource(resource_id).exhaustion_utilisation

    def _keep(self) -> float:
        """How long reported events matter: the longest window any resource uses."""
        every = [self.settings.defaults, *self.settings.overrides.values()]
        return max(max(s.throttle_window, s.fallback_window) for s in every)

    # ---- the daemon's side ----------------------------------------------------------------

    def attach(self, handlers: Handling) -> None:
        """Answer `alerts` and `unregister_schedule`; note fallback reports."""
        handlers.table[Alerts] = self._reply
        report = handlers.table[ReportGrants]

        def unregister(session: Session, message: UnregisterSchedule) -> bytes:
            client = handlers.client_for(session)
            use = client.uses.get(message.resource_id)
            if use is not None:
                use.schedule = None  # no longer shown in the resource's state either
            self.gatherer.schedules.unregister(client.id, message.resource_id)
            return protocol.encode(UnregisterScheduleResponse(status="ok"))

        def reported(session: Session, message: ReportGrants) -> object:
            reply = report(session, message)
            client = session.client
            if message.times and client is not None:
                self.fallbacks.record(message.resource_id, client.tool, client.id, time.time())
            return reply

        handlers.table[UnregisterSchedule] = unregister
        handlers.table[ReportGrants] = reported

    async def start(self) -> None:
        for outbox in self.outboxes:
            outbox.start()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for outbox in self.outboxes:
            await outbox.close()

    def reload(self, config: Config) -> None:
        """New thresholds at once; the notifiers' command and webhook at the next start."""
        self.settings = AlertSettings.from_config(config)
        self.throttles.keep = self.fallbacks.keep = self._keep()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(EVERY)
            try:
                self.evaluate(time.time(), time.monotonic())
            except Exception as exc:  # a bug: say so (once a minute), keep evaluating
                self._said.log(
                    logging.ERROR, "evaluate", f"alerts: evaluation failed: {exc!r}", True
                )

    def evaluate(self, now: float, mono: float) -> list[dict[str, object]]:
        """One evaluation (`now` Unix, `mono` monotonic): returns what fired or resolved."""
        daemon, settings = self.daemon, self.settings
        snapshot = self.gatherer.snapshot(
            daemon.coordinator, daemon.store, daemon.redis, now, mono,
            settings.degradation_window,
        )  # fmt: skip
        findings = evaluate(snapshot, settings.for_resource)
        changed = self.book.update(findings, now, lambda rid: settings.for_resource(rid).min_hold)
        for alert in changed:
            _log(alert)
            for outbox in self.outboxes:
                outbox.put(alert)
        return changed

    # ---- reading ----------------------------------------------------------------------------

    def alerts(self, include_resolved: bool = False) -> list[dict[str, object]]:
        return self.book.views(include_resolved)

    def firing(self) -> dict[tuple[str, str], int]:
        return self.book.firing()

    def notifier_stats(self) -> list[dict[str, object]]:
        return [outbox.stats() for outbox in self.outboxes]

    def _reply(self, session: Session, message: Alerts) -> bytes:
        return protocol.encode(
            AlertsResponse(alerts=self.alerts(message.all), notifiers=self.notifier_stats())
        )


def _outboxes(settings: AlertSettings, config: Config) -> list[Outbox]:
    outboxes = []
    if settings.command:
        outboxes.append(Outbox("command", command_sender(settings.command)))
    if settings.webhook:
        listen = config.text("daemon.http_listen")
        external = f"http://{listen}/" if listen else ""
        outboxes.append(Outbox("webhook", webhook_sender(settings.webhook, external)))
    return outboxes


def _log(alert: dict[str, object]) -> None:
    tools = ", ".join(str(t) for t in alert["tools"]) or "-"  # type: ignore[attr-defined]
    clients = ", ".join(str(c) for c in alert["clients"]) or "-"  # type: ignore[attr-defined]
    level = logging.WARNING if alert["status"] == "firing" else logging.INFO
    log.log(
        level,
        "alert %s: %s on %s: %s (tools: %s; clients: %s)",
        alert["status"], alert["rule"], alert["resource"], alert["summary"], tools, clients,
    )  # fmt: skip
