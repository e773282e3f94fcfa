"""Coordination through patience-daemon, the same for an `rpr` run and a `patience` attempt.

`coordinate()` builds it from the tool's DaemonSettings: a `DaemonGate` (patience.daemon_gate),
which takes the place of `LocalGate` (each start first acquires a token for its resource
from the daemon, which does the waiting; rpr's back-to-back starts on a resource without a
limit ask for the next tokens while a run is in flight, patience.grant_ahead), a
`ThrottleWatch` (patience.throttle), which tells
the daemon of each start a server throttled, and a `MetricsReporter` (patience.metrics_reporter),
which sends one execution record per start in batches from a background thread, so the run
loop never waits for it. Both share one `Link` (patience.daemon_link): whether the daemon
answers, each change said once.

When the daemon is unreachable, stopping or dies (docs/protocol.md, "Restarts and outages"): one
warning line, and the tool goes on within its share of the limit (the daemon's last word;
fail mode "share"), or the whole limit ("full"), counting its own grants of the last window
so that the switch hands out no fresh burst; with "closed" it stops with an error instead. A
background thread reconnects (starting the daemon again when auto-start is on), each start
looks for the daemon first, and coordination is back from the first start that finds it (said
once), beginning with a report of this tool's recent grants. A start is never lost or
doubled: a token is taken from exactly one of the daemon or the local limiter, and records
that could not be sent wait (bounded) until the daemon is back or the tool exits.

The tools import this module only when the daemon is enabled: it loads threading and the
client, which a plain start must not pay for.
"""

from __future__ import annotations

from patience.daemon.client import DaemonClient
from patience.daemon.manager import DaemonManager
from patience.daemon_gate import DaemonGate
from patience.daemon_link import Link
from patience.metrics_reporter import MetricsReporter
from patience.ratelimit.gate import LocalGate

__all__ = ["Coordination", "DaemonGate", "Link", "MetricsReporter", "coordinate"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from patience.settings.daemon import DaemonSettings
    from patience.throttle import ThrottleWatch


class Coordination:
    """What a tool runs with: `gate` (None when coordination is off and there is no local
    limit), `metrics` (None when disabled) and `throttle` (None when coordination is off).
    Closed when the runs are over (`close()`, or as a context manager): the last records are
    sent and the schedule is withdrawn."""

    def __init__(
        self,
        link: Link,
        gate: DaemonGate | LocalGate | None,
        metrics: MetricsReporter | None,
        clients: list[DaemonClient],
        timeout: float,
        throttle: ThrottleWatch | None = None,
    ) -> None:
        self.link = link
        self.gate = gate
        self.metrics = metrics
        self.throttle = throttle
        self.clients = clients
        self.timeout = timeout

    def close(self) -> None:
        if isinstance(self.gate, DaemonGate):
            self.gate.settle()
        if self.metrics is not None:
            self.metrics.close(self.timeout)
        if self.clients:
            self.link.farewell(self.clients[0])
        self.link.close()
        for client in self.clients:
            client.close()

    def __enter__(self) -> Coordination:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def coordinate(settings: DaemonSettings, command: Sequence[str]) -> Coordination:
    """The coordination of one tool's starts of `command`, as `settings` say."""
    closed = settings.fail_mode == "closed" and settings.coordinated  # a loss stops the tool
    manager = DaemonManager(
        settings.socket_path,
        settings.tool,
        auto_start=settings.auto_start,
        start_timeout=settings.timeout,
        log_level=settings.log_level,
    )
    link = Link(
        settings.prog,
        manager,
        settings.resource_id,
        reconnect=not closed,
        warn=not closed,
        schedule=settings.schedule,
    )
    local = None
    if settings.limit is not None and not settings.paced:  # kept here too: the fallback
        from patience.ratelimit.algorithms import limiter_for

        local = limiter_for(settings.limit)
    clients = []
    gate: DaemonGate | LocalGate | None = None
    throttle = None
    if settings.coordinated:
        client = DaemonClient(settings.socket_path, settings.tool, timeout=settings.timeout)
        clients.append(client)
        gate = DaemonGate(
            link,
            client,
            declared=settings.limit,
            local=local,
            learn=settings.limit is None,
            fallback=settings.fail_mode,
            runs=settings.starts,
            notice=_notice(settings.prog) if settings.show_waits else None,
            ahead=_ahead(settings),
        )
        throttle = _throttle(settings, clients, gate)
    elif local is not None:
        gate = LocalGate(local)
    metrics = None
    if settings.metrics:
        client = DaemonClient(settings.socket_path, settings.tool, timeout=settings.timeout)
        clients.append(client)
        metrics = MetricsReporter(link, client, settings.tool, command, settings.labels)
        if gate is None:
            link.fallback = "keeping the execution records"
    return Coordination(link, gate, metrics, clients, settings.timeout, throttle)


def _ahead(settings: DaemonSettings) -> int | None:
    """The starts the gate may take tokens ahead for (patience.grant_ahead): rpr's, the
    count it plans (None: no end known); none of patience's, which stops at its first
    success and cannot know it ahead."""
    if settings.tool != "repeater":
        return 0
    return settings.schedule.count if settings.schedule is not None else None


def _throttle(
    settings: DaemonSettings, clients: list[DaemonClient], gate: DaemonGate
) -> ThrottleWatch:
    """What looks at each start for a throttle signal, and tells the daemon on a connection
    of its own (opened at the first signal); the gate does not use a token it asked for
    before the signal."""
    import re

    from patience.throttle import ThrottleWatch, feedback_sender

    sender = DaemonClient(settings.socket_path, settings.tool, timeout=settings.timeout)
    clients.append(sender)
    pattern = settings.throttle_pattern
    send = feedback_sender(sender, settings.resource_id)

    def report(signal: str, retry_after: float | None, status: int | None) -> None:
        gate.throttled()
        send(signal, retry_after, status)

    return ThrottleWatch(
        report,
        re.compile(pattern) if pattern else None,
        settings.throttle_exit,
    )


def _notice(prog: str) -> Callable[[str], None]:
    from patience.stderr import say

    return lambda text: say(prog, text)
