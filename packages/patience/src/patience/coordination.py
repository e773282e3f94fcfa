"""Coordination through patience-daemon, the same for an `rpr` run and a `patience` attempt.

`coordinate()` builds it from the tool's options and configuration: a `DaemonGate`, which
takes the place of `LocalGate` (each start first acquires a token for its resource from the
daemon, which does the waiting), and a `MetricsReporter`, which sends one execution record
per start in batches from a background thread, so the run loop never waits for it.

When the daemon is unreachable, stopping or dies (docs/protocol.md, "Restarts and outages"): one
warning line, and the tool goes on within its share of the limit (the daemon's last word;
fallback "share"), or the whole limit ("full"), counting its own grants of the last window so
that the switch hands out no fresh burst; with "closed" it stops with an error instead. A
background thread reconnects (starting the daemon again when auto-start is on), each start
looks for the daemon first, and coordination is back from the first start that finds it (said
once), beginning with a report of this tool's recent grants. A start is never lost or
doubled: a token is taken from exactly one of the daemon or the local limiter, and records
that could not be sent wait (bounded) until the daemon is back or the tool exits.

The tools import this module only when the daemon is enabled: it loads threading and the
client, which a plain start must not pay for.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque

from patience import process
from patience.daemon.client import METRICS_BATCH, DaemonClient, DaemonError, DaemonUnavailable
from patience.daemon.manager import DaemonManager, DaemonNotRunning
from patience.ratelimit.gate import LocalGate
from patience.stderr import say

__all__ = [
    "CHUNK",
    "FALLBACKS",
    "GATHER",
    "LOCAL_SLICE",
    "MAX_PENDING",
    "MAX_REPORTED",
    "RECONNECT_FIRST",
    "RECONNECT_MAX",
    "RESEND",
    "RETURN_CHECK",
    "Coordination",
    "CoordinationError",
    "DaemonGate",
    "Link",
    "MetricsReporter",
    "coordinate",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from patience.cliparse import Parsed
    from patience.config import Config
    from patience.daemon.client import Grant
    from patience.process import RunResult
    from patience.ratelimit.algorithms import Limiter
    from patience.settings import Limit

CHUNK = 0.5  # seconds the daemon may queue one acquire: the longest a Ctrl-C waits
RECONNECT_FIRST = 0.05  # seconds between the first reconnection attempts (the first is at once),
RECONNECT_MAX = 5.0  # ... doubling up to this
RETURN_CHECK = 0.05  # a start while the daemon is away first looks for it, if not looked lately
LOCAL_SLICE = 0.25  # a wait for a local token looks for the daemon this often
RESEND = 0.25  # how often unsent metrics look whether the daemon is back
GATHER = 0.2  # seconds a metrics batch may gather records before it is sent
MAX_PENDING = 10_000  # records kept while the daemon is away; beyond, new ones are dropped
MAX_ARGS, MAX_ARG = 4096, 65_536  # what the daemon accepts of a command line
MAX_REPORTED = 10_000  # grant times kept for a report (protocol.MAX_REPORTED)
FALLBACKS = ("share", "full", "closed")  # what a start does while the daemon is away


class CoordinationError(Exception):
    """The daemon options cannot work (no place for the socket); a usage error."""


class Link:
    """Whether the daemon answers, as this tool last saw it; each change said once on stderr.

    `up` is None before the first contact, which starts the daemon when allowed. A loss
    starts a background thread that reconnects with backoff (the first attempt at once);
    besides, each start while the daemon is away looks for it first (`try_return`), so a
    daemon that is back (restarted, or started by another tool) is used again at once.
    `epoch` counts the contacts made: a gate reports its grants once after each."""

    def __init__(
        self,
        prog: str,
        manager: DaemonManager,
        resource_id: str,
        *,
        reconnect: bool,
        warn: bool,
        schedule: dict[str, object] | None = None,
    ) -> None:
        self.prog = prog
        self.manager = manager
        self.resource_id = resource_id
        self.reconnect = reconnect  # False when a loss stops the tool (fail mode closed)
        self.warn = warn
        self.schedule = schedule
        self.fallback = f"running {resource_id} without a shared limit"  # what a loss means
        self.up: bool | None = None
        self.reason = ""
        self.epoch = 0
        self._tried = -math.inf  # when the daemon was last looked for
        self._first = threading.Lock()
        self._cond = threading.Condition()
        self._closed = False

    def first_contact(self, client: DaemonClient) -> bool:
        """Find (or start) the daemon once; True when it answers."""
        with self._first:
            if self.up is None:
                self._tried = time.monotonic()
                try:
                    self.manager.ensure(client)
                except DaemonNotRunning as exc:
                    self.lost(str(exc))
                else:
                    self._introduce(client)
                    with self._cond:
                        self.up = True
                        self.epoch += 1
            return bool(self.up)

    def lost(self, reason: str) -> None:
        """The daemon stopped answering: say so once and reconnect in the background."""
        with self._cond:
            if self.up is False or self._closed:
                return
            self.up = False
            self.reason = reason
            if self.reconnect:
                threading.Thread(target=self._reconnect, name="reconnect", daemon=True).start()
        if self.warn and process.interrupted() is None:
            say(
                self.prog,
                f"warning: patience-daemon unavailable: {reason}; {self.fallback} until it is back",
            )

    def try_return(self, client: DaemonClient) -> bool:
        """While the daemon is away: whether it answers again, by one ping through `client`
        (no start: that is the thread's), at most once per RETURN_CHECK."""
        now = time.monotonic()
        if self.up or now - self._tried < RETURN_CHECK:
            return bool(self.up)
        self._tried = now
        if self.manager.check(client) is not None:
            return False
        self._back(client)
        return True

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _reconnect(self) -> None:
        delay = 0.0
        while True:
            with self._cond:
                if self._cond.wait_for(lambda: self._closed or bool(self.up), timeout=delay):
                    return
            self._tried = time.monotonic()
            client = DaemonClient(self.manager.socket_path, self.manager.tool)
            try:
                self.manager.ensure(client)
            except DaemonNotRunning:
                delay = min(max(2 * delay, RECONNECT_FIRST), RECONNECT_MAX)
                continue
            else:
                self._back(client)
                return
            finally:
                client.close()

    def _back(self, client: DaemonClient) -> None:
        """The daemon answers again (through `client`): say so once."""
        self._introduce(client)
        with self._cond:
            if self.up is not False or self._closed:
                return
            self.up = True
            self.epoch += 1
            self._cond.notify_all()
        say(
            self.prog,
            f"patience-daemon is back on {self.manager.socket_path};"
            f" coordinating {self.resource_id} through it again",
        )

    def farewell(self, client: DaemonClient) -> None:
        """Our schedule ends on purpose: say so, so that the daemon does not take the silence
        that follows for a missed schedule (an alert); best effort."""
        if self.schedule is not None and self.up:
            try:
                client.request({"type": "unregister_schedule", "resource_id": self.resource_id})
            except (DaemonError, DaemonUnavailable):
                pass

    def _introduce(self, client: DaemonClient) -> None:
        """Tell the daemon our schedule (shown in its resource state); best effort."""
        if self.schedule is not None:
            try:
                client.register_schedule(self.resource_id, self.schedule)
            except (DaemonError, DaemonUnavailable):
                pass


class DaemonGate:
    """`wait_turn()` as LocalGate's, with the token taken from the daemon.

    `declared` (this tool's own Limit) is sent with each request: the daemon
    applies it when its configuration has no limit for the resource. `local` is the same
    limit kept in this process, fed with every grant; with `learn`, a gate without one adopts
    the limit the daemon reports. `failure` says why the gate closed (fallback "closed", or
    the daemon refused us).

    While the daemon is away (`fallback`): "share" keeps to the share of the limit the daemon
    last gave this client (the limit divided among the clients using it, so that together
    they stay within it), "full" to the whole limit, "closed" stops. Either counts this
    client's own grants of the last window, so the switch hands out no fresh burst, and holds
    for one window more once the daemon is back: a new daemon cannot know the grants of the
    clients that have not come back yet. Back at the daemon, the gate first reports its grants
    of the last window (`report_grants`), so that a daemon that restarted or replaced a
    crashed one counts them."""

    def __init__(
        self,
        link: Link,
        client: DaemonClient,
        *,
        declared: Limit | None,
        local: Limiter | None,
        learn: bool,
        fallback: str,
        runs: str,
    ) -> None:
        self.link = link
        self.client = client
        self.declared = declared
        self.local = local
        self.learn = learn and local is None
        self.fallback = fallback
        self.fail_closed = fallback == "closed"
        self.runs = runs  # "runs" or "attempts", for the fail-closed message
        self.failure: str | None = None
        self.share: int | None = None  # the daemon's last word on our share
        self.recent: deque[float] = deque(maxlen=MAX_REPORTED)  # our grants, monotonic
        self.outage: Limiter | None = None  # what we keep to while the daemon is away ...
        self.outage_ends = math.inf  # ... and until then, once it is back
        self.reported = 0  # the link epoch whose report is done
        self._describe_fallback()

    def wait_turn(self, until: float | None = None) -> bool:
        """Block until this start may go (True), or the tool is interrupted, the gate has
        closed (False; `failure` says which) or no token comes before `until`."""
        if self.failure is not None:
            return False
        while process.interrupted() is None:
            if self.link.up is None:
                self.link.first_contact(self.client)
            if not self.link.up and not self.fail_closed:
                turn = self._local_turn(until)
                if turn is not None:
                    return turn
                continue  # the daemon is back
            granted = self._ask(until)
            if granted is not None:
                return granted
            if self.fail_closed:
                self.failure = (
                    f"patience-daemon unavailable: {self.link.reason}; the fail mode is"
                    f" closed, so no more {self.runs} start (start it with: patience-daemon"
                    f" --socket {self.link.manager.socket_path}, or use --daemon-fail-mode share)"
                )
                return False
        return False

    def _ask(self, until: float | None) -> bool | None:
        """A token from the daemon: True granted, False interrupted or refused, None when
        the daemon is gone. The daemon queues each request up to CHUNK; a longer wait is
        slept here and asked again, so that a Ctrl-C is never kept waiting long."""
        try:
            self._report()
            free_at = self._free_at(time.monotonic())  # no need to ask before
            if (until is not None and free_at > until) or not process.sleep_until(free_at):
                return False
            while True:
                grant = self.client.acquire(
                    self.link.resource_id,
                    max_wait=CHUNK,
                    limit=self.declared,
                )
                if grant.share is not None and grant.share != self.share:
                    self.share = grant.share
                    self._describe_fallback()
                if grant.granted:
                    self._granted(grant)
                    return True
                now = time.monotonic()
                if until is not None and now + grant.retry_after > until:
                    return False
                pause = grant.retry_after - CHUNK / 2
                if not process.sleep_until(now + max(pause, 0.0)):
                    return False
        except DaemonUnavailable as exc:
            self.link.lost(str(exc))
            return None
        except DaemonError as exc:
            self.failure = f"patience-daemon refused {self.link.resource_id}: {exc}"
            return False

    def _report(self) -> None:
        """Once after each contact: our grants of the last window (made here while the daemon
        was away, or given by a daemon that has since stopped), so that the daemon counts them.
        A daemon that does not know the message cannot count them; we go on."""
        if self.reported == self.link.epoch:
            return
        self.reported = self.link.epoch
        if self.outage is not None:
            self.outage_ends = time.monotonic() + self.outage.window
        if self.local is None:
            return
        times = self._recent(self.local.window, MAX_REPORTED)
        if not times:
            return
        offset = time.time() - time.monotonic()
        try:
            self.client.report_grants(
                self.link.resource_id, [at + offset for at in times], self.declared
            )
        except DaemonError:
            pass

    def _local_turn(self, until: float | None) -> bool | None:
        """A start while the daemon is away: True under the fallback limit, False when
        interrupted or no token comes before `until`, None as soon as the daemon is back. The
        wait looks for the daemon every LOCAL_SLICE."""
        limiter = self._outage_limiter()
        while True:
            if self.link.try_return(self.client):
                return None
            now = time.monotonic()
            if limiter is None:  # no limit known here
                self._record(now)
                return True
            if self.share == 0 and self.fallback == "share":  # only the daemon lets us go
                if until is not None and now >= until:
                    return False
                wake = now + LOCAL_SLICE if until is None else min(until, now + LOCAL_SLICE)
            else:
                free_at = limiter.available_at(now)
                if free_at <= now:
                    self._record(now)
                    return True
                if until is not None and free_at > until:
                    return False
                wake = min(free_at, now + LOCAL_SLICE)
            if not process.sleep_until(wake):
                return False

    def _outage_limiter(self) -> Limiter | None:
        """The limit kept while the daemon is away, made at an outage's first start: our
        share (or the whole limit: fallback "full", or no share known yet), holding our own
        grants of the last window. None when no limit is known here."""
        local = self.local
        self.outage_ends = math.inf
        if self.outage is None and local is not None:
            from patience.ratelimit.algorithms import make_limiter

            share = local.limit if self.fallback == "full" or self.share is None else self.share
            self.outage = make_limiter(local.algorithm, max(share, 1), local.window)
            for at in self._recent(local.window, max(share, 1)):
                self.outage.acquire(at)
        return self.outage

    def _free_at(self, now: float) -> float:
        """When the limits kept here let the next start go: the local limit, and the outage's
        for one window after the daemon came back (ending then)."""
        free_at = self.local.available_at(now) if self.local is not None else 0.0
        if self.outage is not None and self.link.up:
            if now >= self.outage_ends or self.share == 0:
                self.outage = None
            else:
                free_at = max(free_at, self.outage.available_at(now))
        return free_at

    def _granted(self, grant: Grant) -> None:
        now = time.monotonic()
        known = grant.limit
        if (
            self.learn
            and known is not None
            and (self.local is None or self.local.as_limit() != known)
        ):
            from patience.ratelimit.algorithms import limiter_for

            self.local = limiter_for(known)
            self._describe_fallback()
        self._record(now)

    def _record(self, now: float) -> None:
        """One start of ours, granted by the daemon or here: the limits kept here and the next
        report count it."""
        self.recent.append(now)
        if self.local is not None:
            self.local.acquire(now)
        if self.outage is not None:
            self.outage.acquire(now)

    def _recent(self, window: float, most: int) -> list[float]:
        """Our grants of the last `window`, the newest `most` of them, oldest first."""
        since = time.monotonic() - window
        times = [at for at in self.recent if at > since]
        return times[-most:]

    def _describe_fallback(self) -> None:
        """What the warning of a loss will say we do meanwhile."""
        local, resource = self.local, self.link.resource_id
        if local is None:
            return
        if self.fallback == "full" or self.share is None:
            self.link.fallback = f"limiting {resource} to {local.describe()} locally"
        elif self.share == 0:
            self.link.fallback = (
                f"waiting to run {resource} (its share of {local.describe()} is none:"
                " more clients than the limit)"
            )
        else:
            self.link.fallback = (
                f"limiting {resource} to its share, {self.share} of {local.describe()}, locally"
            )


class MetricsReporter:
    """One execution record per start (the ExecutionMetrics schema), sent in batches by a
    background thread; `close()` flushes what is left."""

    def __init__(
        self,
        link: Link,
        client: DaemonClient,
        tool: str,
        command: Sequence[str],
        labels: dict[str, str],
    ) -> None:
        self.link = link
        self.client = client
        self.base: dict[str, object] = {
            "tool": tool,
            "resource_id": link.resource_id,
            "command": [arg[:MAX_ARG] for arg in command[:MAX_ARGS]],
            "labels": labels,
        }
        self.wall_offset = time.time() - time.monotonic()
        self.pending: list[dict[str, object]] = []
        self.dropped = 0
        self.refused = False
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def add(
        self, result: RunResult, success: bool, *, attempt: int = 0, execution: int = 0
    ) -> None:
        """Queue the record of one finished start; never blocks on the daemon. Its random
        128-bit id lets the daemon store it once however often it is resent."""
        record = dict(
            self.base,
            record_id=os.urandom(16).hex(),
            start_time=max(0.0, result.start + self.wall_offset),
            duration=max(0.0, result.duration),
            success=success,
            exit_code=result.status,
            attempt_number=attempt,
            execution_number=execution,
        )
        with self._cond:
            if self.refused:
                return
            if len(self.pending) >= MAX_PENDING:
                self.dropped += 1
                return
            self.pending.append(record)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._send_loop, name="patience-metrics", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def close(self, timeout: float) -> None:
        """Send what is left (one last try even if the daemon seemed away), waiting at most
        `timeout`; say how many records were lost unless the user was told of the outage."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)
        with self._cond:
            lost = len(self.pending) + self.dropped
        if lost and self.link.up and not self.refused:
            say(
                self.link.prog,
                f"warning: {lost} execution records were not delivered to patience-daemon",
            )

    def _send_loop(self) -> None:
        last_try = False  # at exit, a failed delivery gets one more try on a new connection
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self.pending or self._closing)
                if not self._closing:  # let a batch gather
                    self._cond.wait_for(lambda: self._closing, timeout=GATHER)
                if not self.pending:
                    return
                batch = self.pending[:METRICS_BATCH]
                closing = self._closing
            if self._deliver(batch, closing):
                with self._cond:
                    del self.pending[: len(batch)]
                continue
            if self.refused or (closing and last_try):
                return
            if closing:
                last_try = True
                continue
            with self._cond:  # the daemon is away: look again later
                self._cond.wait_for(lambda: self._closing, timeout=RESEND)

    def _deliver(self, batch: list[dict[str, object]], closing: bool) -> bool:
        link = self.link
        if link.up is None:
            link.first_contact(self.client)
        if not link.up and not closing:
            return False
        try:
            self.client.send_metrics(batch)
        except DaemonUnavailable as exc:
            link.lost(str(exc))
            return False
        except DaemonError as exc:
            with self._cond:
                self.refused = True
                self.pending.clear()
            say(link.prog, f"warning: patience-daemon did not store the execution records: {exc}")
            return False
        return True


class Coordination:
    """What a tool runs with: `gate` (None when coordination is off and there is no local
    limit) and `metrics` (None when disabled). `close()` when the runs are over."""

    def __init__(
        self,
        link: Link,
        gate: DaemonGate | LocalGate | None,
        metrics: MetricsReporter | None,
        clients: list[DaemonClient],
        timeout: float,
    ) -> None:
        self.link = link
        self.gate = gate
        self.metrics = metrics
        self.clients = clients
        self.timeout = timeout

    def close(self) -> None:
        if self.metrics is not None:
            self.metrics.close(self.timeout)
        if self.clients:
            self.link.farewell(self.clients[0])
        self.link.close()
        for client in self.clients:
            client.close()


def coordinate(
    prog: str,
    parsed: Parsed,
    config: Config,
    *,
    declared: Limit | None = None,
    local: Limiter | None = None,
    learn: bool = True,
    labels: dict[str, str] | None = None,
    schedule: dict[str, object] | None = None,
) -> Coordination:
    """The coordination of `prog` ("rpr" or "patience") for `parsed.command`.

    The daemon options not given on the command line come from `config`. `declared` is a
    limit the tool itself sets (`rpr rate-limit --rate`, `patience diophantine`), `local`
    the limiter that enforces it here; `learn=False` when the tool limits itself another
    way (the diophantine pacing)."""
    from patience.daemon import paths
    from patience.daemon_options import config_keys

    section = "repeater" if prog == "rpr" else "patience"
    values = parsed.values
    config.fill(values, parsed.explicit, config_keys(section))
    try:
        socket_path = paths.resolve_socket(_text(values["daemon_socket"]))
        paths.check_socket_length(socket_path)
    except (paths.PathError, OSError) as exc:
        raise CoordinationError(f"daemon socket: {exc}") from None
    timeout = values["daemon_timeout"]
    assert isinstance(timeout, float)
    try:
        resource_id = _text(values["resource_id"]) or _resource(
            parsed.command, config.flag(f"{section}.resource_detection")
        )
    except ValueError as exc:
        raise CoordinationError(str(exc)) from None
    configured = config.limit_for(resource_id)
    if declared is None and local is None and configured and configured.limit:
        from patience.ratelimit.algorithms import limiter_for

        declared = configured.limit
        local = limiter_for(declared)
    mode = values["daemon_fail_mode"]  # the command line's, else [rate_limiting] fail_mode
    if "daemon_fail_mode" not in parsed.explicit and configured and configured.fallback:
        mode = configured.fallback  # the resource's own entry is more specific
    fallback = mode if isinstance(mode, str) and mode in FALLBACKS else "share"
    fail_closed = fallback == "closed"
    coordinated = config.flag("rate_limiting.coordination_enabled")
    manager = DaemonManager(
        socket_path,
        section,
        auto_start=bool(values["daemon_auto_start"]),
        start_timeout=timeout,
        log_level=config.text(f"{section}.log_level"),
    )
    link = Link(
        prog,
        manager,
        resource_id,
        reconnect=not (fail_closed and coordinated),
        warn=not (fail_closed and coordinated),
        schedule=schedule,
    )
    clients = []
    gate: DaemonGate | LocalGate | None = None
    if coordinated:
        client = DaemonClient(socket_path, section, timeout=timeout)
        clients.append(client)
        gate = DaemonGate(
            link,
            client,
            declared=declared,
            local=local,
            learn=learn,
            fallback=fallback,
            runs="runs" if prog == "rpr" else "attempts",
        )
    elif local is not None:
        gate = LocalGate(local)
    metrics = None
    if section == "patience" or config.flag("repeater.metrics_enabled"):
        client = DaemonClient(socket_path, section, timeout=timeout)
        clients.append(client)
        metrics = MetricsReporter(link, client, section, parsed.command, labels or {})
        if gate is None:
            link.fallback = "keeping the execution records"
    return Coordination(link, gate, metrics, clients, timeout)


def _resource(command: Sequence[str], detect: bool) -> str:
    """The detected resource id, or without detection the program's generic one."""
    from patience.ratelimit.resources import command_resource, detect_resource

    return detect_resource(command) if detect else command_resource(command[0])


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
