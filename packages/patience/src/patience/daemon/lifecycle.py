"""The daemon process's life: prepare (socket directory, lock, stale socket, bind, pid file,
metrics store), serve until SIGTERM/SIGINT (SIGHUP reloads the configuration), stop gracefully.

Serving is an asyncio server on a Unix socket speaking newline-delimited JSON: connections are
framed by patience.daemon.framing, hosted by patience.daemon.connections, answered by
patience.daemon.handlers; decisions are the Coordinator's. Around them this module runs the
housekeeping timers (idle connections, forgotten clients, usage flushes, retention), keeps the
recent grants across a restart (patience.daemon.state), tells systemd it is ready, and starts
and stops the services that live as long as it serves (`add_service`: the Redis admission,
other servers). Its configuration is the one rpr and patience read (patience.config).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from patience import __version__
from patience.config import Config, ConfigError, load
from patience.daemon import paths, process, protocol, redis_connect, state
from patience.daemon.admission import Resolved
from patience.daemon.alerts.service import AlertService
from patience.daemon.connections import Connections, Limits
from patience.daemon.coordinator import Coordinator, CoordinatorError
from patience.daemon.feedback import FeedbackService
from patience.daemon.fleet import HEARTBEAT, FleetService
from patience.daemon.framing import Connection, InputBudget
from patience.daemon.handlers import Handlers
from patience.daemon.protocol import Status
from patience.daemon.redis_admission import WATCH_EVERY, RedisAdmission
from patience.daemon.state_replies import StatusResponse
from patience.daemon.storage import MetricsStore
from patience.daemon.totals import Totals
from patience.ratelimit.algorithms import RateLimitError

if TYPE_CHECKING:
    from patience.daemon.learned_share import LearnedShare

__all__ = ["AT_START", "Daemon", "Intervals", "Service", "StartError"]

StartError = process.StartError

log = logging.getLogger("patience.daemon")

# Read once at start; a reload that changes them says they wait for the next start.
AT_START = (
    "daemon.socket_path",
    "daemon.storage_path",
    "daemon.metrics_enabled",
    "daemon.peer_group",
    "daemon.backend",
    "daemon.redis_url",
    "daemon.redis_clock",
    "daemon.redis_cluster",
    "daemon.http_listen",
    "daemon.http_token",
    "daemon.http_hosts",
    "daemon.http_max_resources",
    "alerting.command",
    "alerting.webhook",
)


class Intervals:
    """How often the daemon does its housekeeping, in seconds: checking idle connections and
    forgetting idle clients (`housekeeping`), flushing usage counters to the store (`flush`),
    applying retention (`prune`), pinging Redis with the Redis backend (`redis_watch`) and
    renewing this daemon's record in the fleet registry (`fleet_heartbeat`); how
    long a refused connection may stay to read why (`refused_linger`) and replies may drain
    at a stop (`stop_grace`). The defaults serve; tests pass shorter ones so as not to wait
    them out."""

    __slots__ = (
        "fleet_heartbeat",
        "flush",
        "housekeeping",
        "prune",
        "redis_watch",
        "refused_linger",
        "stop_grace",
    )

    def __init__(
        self,
        housekeeping: float = 1.0,
        flush: float = 5.0,
        prune: float = 600.0,
        redis_watch: float = WATCH_EVERY,
        refused_linger: float = 5.0,
        stop_grace: float = 2.0,
        fleet_heartbeat: float = HEARTBEAT,
    ) -> None:
        self.housekeeping = housekeeping
        self.flush = flush
        self.prune = prune
        self.redis_watch = redis_watch
        self.refused_linger = refused_linger
        self.stop_grace = stop_grace
        self.fleet_heartbeat = fleet_heartbeat


class Service(Protocol):
    """Something that runs as long as the daemon serves: started once the socket is served,
    closed after the connections are."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Daemon:
    """`config_file` (--config) and `log_level` (--log-level) are the daemon's own flags: a
    reload reads the configuration again with the same file and keeps the flag's level."""

    def __init__(
        self,
        config: Config,
        socket_path: str,
        storage_path: str,
        config_file: str | None,
        log_level: str | None,
        intervals: Intervals | None = None,
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.storage_path = storage_path
        self.config_file = config_file
        self.log_level = log_level
        self.intervals = intervals or Intervals()
        self.pid_path = socket_path + ".pid"
        self.lock_path = socket_path + ".lock"
        self.uid = os.geteuid()
        self.group = process.group_id(
            config.text("daemon.peer_group"), config.source("daemon.peer_group")
        )
        self.coordinator = Coordinator(
            config.limits(),
            _text(config, "rate_limiting.default_algorithm"),
            _seconds(config, "daemon.client_ttl"),
        )
        self.redis = _redis_admission(
            config, self.coordinator, self._deliver, self.intervals.redis_watch
        )
        self.services: list[Service] = [self.redis] if self.redis is not None else []
        self.alerts = AlertService(self, config)  # rules, life cycle, notifiers
        self.services.append(self.alerts)
        self.feedback = FeedbackService(self.coordinator, _host_load(), _learned_share(self.redis))
        self.feedback.listeners.append(self.alerts.throttles.record)
        self.services.append(self.feedback)  # throttle feedback, learned limits
        self.store: MetricsStore | None = None
        self.started = time.time()
        self.fleet = _fleet(self.redis, self.coordinator, self.started, self.intervals)
        if self.fleet is not None:
            self.services.append(self.fleet)  # the fleet registry and the fallback share
        self.totals = Totals(config.number("daemon.http_max_resources"))  # for /metrics
        self._lock_fd = -1
        self._listener: socket.socket | None = None  # from prepare
        self.handlers: Handlers
        self.connections: Connections

    def add_service(self, service: Service) -> None:
        """Run `service` as long as the daemon serves (add it before `serve`)."""
        self.services.append(service)

    # ---- start and stop ------------------------------------------------------------------------

    def prepare(self) -> None:
        """Everything that can fail before serving: directory, lock, stale socket, bind, store."""
        paths.check_socket_length(self.socket_path)
        try:
            paths.prepare_socket_dir(os.path.dirname(self.socket_path), self.uid, self.group)
        except paths.PathError as exc:
            raise StartError(str(exc)) from None
        except OSError as exc:
            raise StartError(f"cannot create the socket directory: {exc}") from None
        self._lock_fd = process.take_lock(self.lock_path, self.pid_path, self.socket_path, self.uid)
        process.clear_stale_socket(self.socket_path, self.lock_path)
        self._listener = process.bind(self.socket_path, self.group)
        try:
            process.write_pid(self.pid_path, self.uid)
            if self.config.flag("daemon.metrics_enabled"):
                self.store = MetricsStore(
                    self.storage_path,
                    _seconds(self.config, "daemon.retention_age"),
                    self.config.number("daemon.retention_count"),
                    _seconds(self.config, "daemon.minute_rollup_retention"),
                    _seconds(self.config, "daemon.hour_rollup_retention"),
                )
        except paths.PathError as exc:  # a file someone else placed there, or open to others
            self._cleanup()
            raise StartError(str(exc)) from None
        except Exception as exc:
            self._cleanup()
            raise StartError(f"cannot open the metrics store {self.storage_path}: {exc}") from None
        process.raise_fd_limit(self.config.number("daemon.max_connections") + 64)
        self._wire()

    def _wire(self) -> None:
        """The request path: connections hosted by Connections, answered by Handlers."""
        self.handlers = Handlers(self.coordinator, self.store, self._flush_usage, self._arm)
        self.handlers.table[Status] = self._status
        self.handlers.on_stored = self.totals.add_executions
        self.alerts.attach(self.handlers)
        self.feedback.attach(self.handlers)
        if self.fleet is not None:
            self.fleet.attach(self.handlers)
        self.connections = Connections(
            self.coordinator,
            _limits(self.config),
            lambda uid, gid: process.peer_allowed(uid, gid, self.uid, self.group),
            self.redis.kick if self.redis is not None else None,
        )

    def _cleanup(self) -> None:
        for path in (self.socket_path, self.pid_path):
            paths.remove_own_file(path, self.uid)  # a name someone else placed there stays
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the lock file stays: removing it would race a new daemon
            self._lock_fd = -1

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        assert self._listener is not None, "prepare() first"
        self._restore_state()
        budget, handle = InputBudget(), self.handlers.handle
        linger = self.intervals.refused_linger
        # Before accepting anyone: a request must not be decided locally only because the
        # Redis admission has not had its first answer yet (clients wait in the backlog).
        for service in self.services:
            await service.start()
        server = await loop.create_unix_server(
            lambda: Connection(self.connections, handle, budget, linger),
            sock=self._listener,
            backlog=1024,
        )
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        housekeeping = loop.create_task(self._housekeeping())
        process.notify("READY=1\nSTATUS=serving " + self.socket_path)
        log.info("serving %s (pid %d, version %s)", self.socket_path, os.getpid(), __version__)
        try:
            await done.wait()
        finally:
            await self._stop(server, housekeeping)

    async def _stop(self, server: asyncio.Server, housekeeping: asyncio.Task[None]) -> None:
        process.notify("STOPPING=1")
        log.info("stopping")
        server.close()
        housekeeping.cancel()
        await self.connections.close_all(self.intervals.stop_grace)
        self._save_state()  # before the lock is released: the next daemon reads it
        for service in reversed(self.services):
            await service.close()
        self._flush_usage()
        if self.store is not None:
            self.store.close()
        self._cleanup()
        log.info("stopped")

    # ---- the recent grants across a restart ----------------------------------------------------

    def _save_state(self) -> None:
        """Keep the recent grants for the next daemon (state.py); the Redis backend keeps them
        in Redis instead. A failure is logged: stopping goes on."""
        if self.redis is not None:
            return
        now = time.monotonic()
        offset = time.time() - now
        saved = [
            state.SavedResource(rid, window, [(at + offset, n, c) for at, n, c in grants])
            for rid, window, grants in self.coordinator.saved_grants(now)
        ]
        where = state.path_for(self.socket_path)
        try:
            learned = self.feedback.saved()
            resources, grants = state.save(where, self.uid, saved, now + offset, learned)
        except (OSError, paths.PathError) as exc:
            log.error("could not save the rate-limit state to %s: %s", where, exc)
            return
        if resources < len(saved):
            log.warning("saved %d of %d resources (the state file's bound)", resources, len(saved))
        log.info("saved %d recent grants of %d resources to %s", grants, resources, where)

    def _restore_state(self) -> None:
        """Count the grants the previous daemon saved at its stop as our own."""
        if self.redis is not None:
            return
        try:
            saved = state.load(state.path_for(self.socket_path), self.uid)
        except state.StateError as exc:
            log.warning("%s; starting without the previous daemon's grants", exc)
            return
        now = time.monotonic()
        offset = time.time() - now
        self.feedback.restore(saved.learned, now)
        for resource in saved.resources:
            grants = [(at - offset, n, c) for at, n, c in resource.grants]
            try:
                self.coordinator.restore_grants(resource.id, resource.window, grants, now)
            except CoordinatorError as exc:
                log.warning("state file: skipped %s: %s", resource.id, exc)
        if saved.resources or saved.learned:
            log.info(
                "restored the recent grants of %d resources and %d learned limits",
                len(saved.resources), len(saved.learned),
            )  # fmt: skip

    # ---- while serving ------------------------------------------------------------------------

    def reload(self) -> None:
        """SIGHUP: read every configuration source again; a bad value keeps the old
        configuration whole."""
        try:
            fresh = load("patience-daemon", config_file=self.config_file)
            limits = fresh.limits()
            algorithm = _text(fresh, "rate_limiting.default_algorithm")
            self.coordinator.reload(limits, algorithm, time.monotonic())
        except (ConfigError, RateLimitError) as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            return
        for warning in fresh.warnings:
            log.warning("%s", warning)
        for key in AT_START:
            if fresh.get(key) != self.config.get(key):
                log.warning("%s changed: it takes effect at the next start", key)
        self.coordinator.set_client_ttl(_seconds(fresh, "daemon.client_ttl"))
        self.alerts.reload(fresh)
        self.connections.limits = _limits(fresh)
        if self.store is not None:
            self.store.retention = _seconds(fresh, "daemon.retention_age")
            self.store.retention_count = fresh.number("daemon.retention_count")
            self.store.minute_retention = _seconds(fresh, "daemon.minute_rollup_retention")
            self.store.hour_retention = _seconds(fresh, "daemon.hour_rollup_retention")
        logging.getLogger().setLevel((self.log_level or _text(fresh, "daemon.log_level")).upper())
        self._arm()
        sources = ", ".join(doc.path or "the environment" for doc in fresh.documents)
        log.info("reloaded %s: %d resource limits", sources or "the defaults", len(limits))

    async def _housekeeping(self) -> None:
        intervals = self.intervals
        last_flush = last_prune = time.monotonic()
        while True:
            await asyncio.sleep(intervals.housekeeping)
            now = time.monotonic()
            self.connections.expire(now)
            self.coordinator.expire(now, time.time())
            if now - last_flush >= intervals.flush:
                last_flush = now
                self._flush_usage()
            if self.store is not None and now - last_prune >= intervals.prune:
                last_prune = now
                self.store.prune(time.time())

    def _flush_usage(self) -> None:
        usage = self.coordinator.take_usage()
        self.totals.add_usage(usage)
        if self.store is None or not usage:
            return
        minute = int(time.time() // 60)
        rows = [
            (minute, resource_id, tool, int(granted), int(denied), int(waited), wait_total)
            for (resource_id, tool), (granted, denied, waited, wait_total) in usage.items()
        ]
        try:
            self.store.add_usage(rows)
        except Exception as exc:
            log.error("could not store rate-limit usage: %s", exc)

    def _arm(self) -> None:
        self.connections.arm()

    def _deliver(self, resolved: Resolved) -> None:
        self.connections.deliver(resolved)

    def _status(self, session: object, message: Status) -> bytes:
        redis = self.redis
        return protocol.encode(
            StatusResponse(
                pid=os.getpid(),
                version=__version__,
                uptime=time.time() - self.started,
                socket=self.socket_path,
                protocol_versions=list(protocol.PROTOCOL_VERSIONS),
                resources=len(self.coordinator.resources),
                clients=len(self.coordinator.clients),
                connections=len(self.connections.open),
                waiting=self.connections.waiting + self.coordinator.sleeping_v1(time.time()),
                metrics_enabled=self.store is not None,
                backend="redis" if redis is not None else "memory",
                redis_url=redis.url if redis is not None else None,
                redis_unreachable_since=redis.unreachable_since if redis is not None else None,
            )
        )


def _limits(config: Config) -> Limits:
    return Limits(
        config.number("daemon.max_connections"),
        _seconds(config, "daemon.idle_timeout"),
        _seconds(config, "daemon.line_timeout"),
    )


def _text(config: Config, key: str) -> str:
    """A key that has a default, as text."""
    value = config.text(key)
    assert value is not None, key
    return value


def _seconds(config: Config, key: str) -> float:
    """A duration key that has a default, in seconds."""
    value = config.seconds(key)
    assert value is not None, key
    return value


def _redis_admission(
    config: Config,
    coordinator: Coordinator,
    deliver: Callable[[Resolved], None],
    watch_every: float,
) -> RedisAdmission | None:
    """Admission through Redis when `daemon.backend` is "redis" (multi-host), else None."""
    if config.text("daemon.backend") != "redis":
        return None
    url = config.text("daemon.redis_url")
    if url is None:
        raise StartError(
            f'{config.source("daemon.backend")}: backend "redis" needs daemon.redis_url'
            ' (e.g. redis_url = "redis://HOST:6379/0" or "unix:///PATH/redis.sock")',
            exit_code=2,
        )
    try:
        client = redis_connect.connect(url, config.flag("daemon.redis_cluster"))
        return RedisAdmission(
            coordinator,
            client,
            redis_connect.redacted(url),
            config.text("daemon.redis_clock") == "redis",
            deliver,
            watch_every,
        )
    except ImportError:
        raise StartError(
            "daemon.backend \"redis\" needs the redis package (pip install 'patience-cli[redis]')",
            exit_code=2,
        ) from None
    except ValueError as exc:  # a URL redis-py cannot read
        where = config.source("daemon.redis_url")
        raise StartError(f"{where}: {exc}", exit_code=2) from None


def _host_load() -> Callable[[], float | None]:
    """The host's load against its targets, for adapt_to_load (patience.hostload)."""
    from patience.hostload import HostLoad

    host = HostLoad()
    return host.ratio


def _learned_share(redis: RedisAdmission | None) -> LearnedShare | None:
    """With the Redis backend, the learned limits are shared with the other hosts."""
    if redis is None:
        return None
    from patience.daemon.learned_share import LearnedShare

    return LearnedShare(redis.client, redis.errors)


def _fleet(
    redis: RedisAdmission | None, coordinator: Coordinator, started: float, intervals: Intervals
) -> FleetService | None:
    """With the Redis backend, the daemon registers in the fleet (patience.daemon.fleet)."""
    if redis is None:
        return None
    return FleetService(coordinator, redis.client, redis.errors, started, intervals.fleet_heartbeat)
