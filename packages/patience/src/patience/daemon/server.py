"""The daemon process: an asyncio server on a Unix socket, speaking newline-delimited JSON.

One request per line, one response line per request, in order per connection. Decisions are
made by the Coordinator; this module owns the sockets, the timers and the process lifecycle:
one daemon per socket (a lock file), stale-socket replacement, a private socket (0600, created
under a umask so it is never open to others), peer credentials, resource caps, signals
(TERM/INT stop gracefully, HUP reloads the configuration) and systemd readiness notification.
Its configuration is the one rpr and patience read (patience.config), under its own flags.

The per-request path is kept lean: msgspec decoding, no logging, no awaits.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import socket
import stat
import struct
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from patience import __version__
from patience.config import Config, ConfigError, load
from patience.daemon import paths, protocol, state
from patience.daemon.coordinator import Client, Coordinator, CoordinatorError, Waiter
from patience.daemon.logthrottle import LogThrottle
from patience.daemon.protocol import (
    Acquire,
    AcquireResponse,
    ErrorResponse,
    ExecutionMetrics,
    Handshake,
    HandshakeResponse,
    Metrics,
    MetricsResponse,
    Ping,
    Pong,
    ProtocolError,
    Query,
    QueryResponse,
    RegisterRequest,
    RegisterResponse,
    RegisterSchedule,
    RegisterScheduleResponse,
    ReportGrants,
    ReportGrantsResponse,
    ResourceStateRequest,
    ResourceStateResponse,
    RunMetrics,
    ScheduleRequest,
    ScheduleResponse,
    Status,
    StatusResponse,
)
from patience.daemon.redis_admission import RedisAdmission
from patience.daemon.storage import MetricsStore
from patience.durations import format_duration
from patience.ratelimit.algorithms import RateLimitError

log = logging.getLogger("patience.daemon")

MAX_PENDING = 64  # unanswered requests per connection before we stop reading from it
MAX_BUFFERED = 64 << 20  # unfinished input held across all connections
HOUSEKEEPING = 1.0  # seconds between idle checks
MAX_CLIENT_IDS = 16  # distinct client ids one connection may speak for in its life
REFUSED_LINGER = 5.0  # seconds a refused connection may stay open to read its refusal
FLUSH_EVERY = 5.0  # seconds between rate-limit usage flushes
PRUNE_EVERY = 600.0  # seconds between retention passes


class StartError(Exception):
    """The daemon cannot start; the message says why and what to do. exit_code 1 or 2."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# Read once at start; a reload that changes them says they wait for the next start.
AT_START = (
    "daemon.socket_path",
    "daemon.storage_path",
    "daemon.metrics_enabled",
    "daemon.peer_group",
    "daemon.backend",
    "daemon.redis_url",
    "daemon.redis_clock",
)


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
    ) -> None:
        self.config = config
        self.socket_path = socket_path
        self.storage_path = storage_path
        self.config_file = config_file
        self.log_level = log_level
        self.pid_path = socket_path + ".pid"
        self.lock_path = socket_path + ".lock"
        self.uid = os.geteuid()
        self.group = _group_id(config)
        self.coordinator = Coordinator(
            config.limits(),
            _text(config, "rate_limiting.default_algorithm"),
            _seconds(config, "daemon.client_ttl"),
        )
        self.admission = _admission(config, self.coordinator, self._deliver)
        self.max_connections = config.number("daemon.max_connections")
        self.idle_timeout = _seconds(config, "daemon.idle_timeout")
        self.line_timeout = _seconds(config, "daemon.line_timeout")
        self.store: MetricsStore | None = None
        self.connections: set[Connection] = set()
        self.waiters: dict[Waiter, Connection] = {}
        self.buffered = 0
        self.started = time.time()
        self.stopping = False
        self._lock_fd = -1
        self._listener: socket.socket | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._anonymous = 0
        self.log_throttle = LogThrottle(log)
        # Each handler takes the connection and its own message type.
        self._handlers: dict[type, Callable[[Connection, Any], bytes | Waiter]] = {
            Handshake: self._handshake,
            ScheduleRequest: self._schedule,
            RegisterRequest: self._register,
            RunMetrics: self._run_metrics,
            Acquire: self._acquire,
            ReportGrants: self._report_grants,
            RegisterSchedule: self._register_schedule,
            Metrics: self._metrics,
            Query: self._query,
            ResourceStateRequest: self._resource_state,
            Ping: self._ping,
            Status: self._status,
        }

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
        self._take_lock()
        self._clear_stale_socket()
        self._listener = self._bind()
        try:
            _write_pid(self.pid_path, self.uid)
            if self.config.flag("daemon.metrics_enabled"):
                self.store = MetricsStore(
                    self.storage_path,
                    _seconds(self.config, "daemon.retention_age"),
                    self.config.number("daemon.retention_count"),
                )
        except paths.PathError as exc:  # a file someone else placed there, or open to others
            self._cleanup()
            raise StartError(str(exc)) from None
        except Exception as exc:
            self._cleanup()
            raise StartError(f"cannot open the metrics store {self.storage_path}: {exc}") from None
        _raise_fd_limit(self.max_connections + 64)

    def _take_lock(self) -> None:
        try:
            fd = paths.open_private_file(self.lock_path, self.uid, "lock file")
        except paths.PathError as exc:
            raise StartError(str(exc)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = _read_pid(self.pid_path)
            who = f"pid {holder}" if holder else "another process"
            raise StartError(
                f"another patience-daemon ({who}) already serves {self.socket_path}"
                " (stop it with: patience-daemon stop)"
            ) from None
        self._lock_fd = fd

    def _clear_stale_socket(self) -> None:
        """We hold the lock, so a socket file left here belongs to a daemon that died."""
        try:
            st = os.lstat(self.socket_path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise StartError(
                f"{self.socket_path} exists and is not a socket"
                " (remove it or choose another --socket)"
            )
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(self.socket_path)
        except OSError:
            os.unlink(self.socket_path)
            log.info("replaced a stale socket left at %s", self.socket_path)
            return
        finally:
            probe.close()
        raise StartError(
            f"{self.socket_path} is served by a process that does not hold {self.lock_path}"
            " (stop it or choose another --socket)"
        )

    def _bind(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mode = 0o600 if self.group is None else 0o660
        old = os.umask(0o777 & ~mode)  # the socket is born private: no window open to others
        try:
            sock.bind(self.socket_path)
        except OSError as exc:
            sock.close()
            raise StartError(f"cannot create socket {self.socket_path}: {exc.strerror}") from None
        finally:
            os.umask(old)
        os.chmod(self.socket_path, mode)
        if self.group is not None:
            os.chown(self.socket_path, -1, self.group)
        sock.listen(1024)
        sock.setblocking(False)
        return sock

    def _cleanup(self) -> None:
        for path in (self.socket_path, self.pid_path):
            paths.remove_own_file(path, self.uid)  # a name someone else placed there stays
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # the lock file stays: removing it would race a new daemon
            self._lock_fd = -1

    async def serve(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully."""
        loop = asyncio.get_running_loop()
        assert self._listener is not None
        self._restore_state()
        server = await loop.create_unix_server(
            lambda: Connection(self), sock=self._listener, backlog=1024
        )
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        housekeeping = loop.create_task(self._housekeeping())
        if self.admission is not None:
            await self.admission.start()
        _notify("READY=1\nSTATUS=serving " + self.socket_path)
        log.info("serving %s (pid %d, version %s)", self.socket_path, os.getpid(), __version__)
        try:
            await done.wait()
        finally:
            _notify("STOPPING=1")
            log.info("stopping")
            self.stopping = True
            server.close()
            housekeeping.cancel()
            await self._close_connections()
            self._save_state()  # before the lock is released: the next daemon reads it
            if self.admission is not None:
                await self.admission.close()
            self._flush_usage()
            if self.store is not None:
                self.store.close()
            self._cleanup()
            log.info("stopped")

    async def _close_connections(self) -> None:
        """Answer every waiting request, let replies drain, then close. The answer's code says
        the daemon is going away: a client treats it as unavailability (falls back, reconnects),
        not as a refusal."""
        stopping = protocol.encode(
            ErrorResponse(error="the daemon is stopping; retry later", code=protocol.STOPPING)
        )
        for waiter, connection in list(self.waiters.items()):
            connection.resolve(waiter, stopping)
        self.waiters.clear()
        for connection in list(self.connections):
            connection.transport.close()
        deadline = time.monotonic() + 2.0
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for connection in list(self.connections):
            connection.transport.abort()

    def _save_state(self) -> None:
        """Keep the recent grants for the next daemon (state.py); the Redis backend keeps them
        in Redis instead. A failure is logged: stopping goes on."""
        if self.admission is not None:
            return
        now = _now()
        offset = time.time() - now
        saved = [
            state.SavedResource(rid, window, [(at + offset, n, c) for at, n, c in grants])
            for rid, window, grants in self.coordinator.saved_grants(now)
        ]
        where = state.path_for(self.socket_path)
        try:
            resources, grants = state.save(where, self.uid, saved, now + offset)
        except (OSError, paths.PathError) as exc:
            log.error("could not save the rate-limit state to %s: %s", where, exc)
            return
        if resources < len(saved):
            log.warning("saved %d of %d resources (the state file's bound)", resources, len(saved))
        log.info("saved %d recent grants of %d resources to %s", grants, resources, where)

    def _restore_state(self) -> None:
        """Count the grants the previous daemon saved at its stop as our own."""
        if self.admission is not None:
            return
        try:
            saved = state.load(state.path_for(self.socket_path), self.uid)
        except state.StateError as exc:
            log.warning("%s; starting without the previous daemon's grants", exc)
            return
        now = _now()
        offset = time.time() - now
        for resource in saved:
            grants = [(at - offset, n, c) for at, n, c in resource.grants]
            try:
                self.coordinator.restore_grants(resource.id, resource.window, grants, now)
            except CoordinatorError as exc:
                log.warning("state file: skipped %s: %s", resource.id, exc)
        if saved:
            log.info("restored the recent grants of %d resources", len(saved))

    def reload(self) -> None:
        """SIGHUP: read every configuration source again; a bad value keeps the old
        configuration whole."""
        try:
            fresh = load("patience-daemon", config_file=self.config_file)
            limits = fresh.limits()
            self.coordinator.reload(limits, _text(fresh, "rate_limiting.default_algorithm"), _now())
        except (ConfigError, RateLimitError) as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            return
        for warning in fresh.warnings:
            log.warning("%s", warning)
        for key in AT_START:
            if fresh.get(key) != self.config.get(key):
                log.warning("%s changed: it takes effect at the next start", key)
        self.coordinator.client_ttl = _seconds(fresh, "daemon.client_ttl")
        self.max_connections = fresh.number("daemon.max_connections")
        self.idle_timeout = _seconds(fresh, "daemon.idle_timeout")
        self.line_timeout = _seconds(fresh, "daemon.line_timeout")
        if self.store is not None:
            self.store.retention = _seconds(fresh, "daemon.retention_age")
            self.store.retention_count = fresh.number("daemon.retention_count")
        logging.getLogger().setLevel((self.log_level or _text(fresh, "daemon.log_level")).upper())
        self._arm()
        sources = ", ".join(doc.path or "the environment" for doc in fresh.documents)
        log.info("reloaded %s: %d resource limits", sources or "the defaults", len(limits))

    async def _housekeeping(self) -> None:
        last_flush = last_prune = _now()
        while True:
            await asyncio.sleep(HOUSEKEEPING)
            now = _now()
            for connection in list(self.connections):
                connection.expire(now, self.idle_timeout, self.line_timeout)
            self.coordinator.expire(now, time.time())
            if now - last_flush >= FLUSH_EVERY:
                last_flush = now
                self._flush_usage()
            if self.store is not None and now - last_prune >= PRUNE_EVERY:
                last_prune = now
                self.store.prune(time.time())

    def _flush_usage(self) -> None:
        usage = self.coordinator.take_usage()
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

    # ---- connections ---------------------------------------------------------------------------

    def admit(self, peer: tuple[int, int] | None) -> str | None:
        """Why a new connection from `peer` (uid, gid) is refused, or None to serve it."""
        if self.stopping:
            return "the daemon is stopping; retry later"
        if peer is not None:
            uid, gid = peer
            if not self._peer_allowed(uid, gid):
                log.warning("refused a connection from uid %d", uid)
                return f"permission denied: uid {uid} may not use this daemon"
        if len(self.connections) >= self.max_connections:
            return f"too many connections ({self.max_connections}); retry later"
        return None

    def _peer_allowed(self, uid: int, gid: int) -> bool:
        if uid in (self.uid, 0):
            return True
        if self.group is None:
            return False
        if gid == self.group:
            return True
        import grp
        import pwd

        try:
            return pwd.getpwuid(uid).pw_name in grp.getgrgid(self.group).gr_mem
        except KeyError:
            return False

    def client_for(self, connection: Connection) -> Client:
        """The connection's client; one that skipped the handshake gets an anonymous id."""
        if connection.client is None:
            self._anonymous += 1
            self._speak_for(connection, f"anonymous-{self._anonymous}", "", _now())
        assert connection.client is not None
        return connection.client

    def _speak_for(self, connection: Connection, client_id: str, tool: str, now: float) -> None:
        """The connection speaks for `client_id` from now on, instead of its client so far. The
        ids one connection may use are capped, so that it cannot crowd out other clients."""
        ids = connection.client_ids
        if client_id not in ids and len(ids) >= MAX_CLIENT_IDS:
            raise CoordinatorError(
                f"too many client ids on one connection ({MAX_CLIENT_IDS});"
                " open another connection for another client"
            )
        client = self.coordinator.connect(client_id, tool, now, connection.uid)
        ids.add(client_id)
        if connection.client is not None:
            self.coordinator.disconnect(connection.client, now)
        connection.client = client

    def forget(self, connection: Connection) -> None:
        now = _now()
        for waiter in connection.waiting():
            self.waiters.pop(waiter, None)
            self.coordinator.cancel(waiter, now)
        if connection.client is not None:
            self.coordinator.disconnect(connection.client, now)
        self.connections.discard(connection)
        self._arm(now)

    # ---- requests ----------------------------------------------------------------------------

    def handle(self, connection: Connection, line: bytes) -> bytes | Waiter:
        try:
            message = protocol.decode(line)
            return self._handlers[type(message)](connection, message)
        except (ProtocolError, CoordinatorError, RateLimitError) as exc:
            return protocol.encode(ErrorResponse(error=str(exc)))
        except Exception as exc:  # a bug; a client repeating its request must not flood the log
            self.log_throttle.log(
                logging.ERROR,
                f"internal error: {type(exc).__name__}: {exc}"[:300],
                f"internal error on request {line!r:.200}",
                exc_info=True,
            )
            return protocol.encode(ErrorResponse(error="internal error (see the daemon's log)"))

    def _warn(self, key: str, message: str) -> None:
        """A warning a client can provoke: at most one a minute of each kind."""
        self.log_throttle.log(logging.WARNING, key, message)

    def _handshake(self, connection: Connection, message: Handshake) -> bytes:
        offered = message.versions or [message.version or "1.0"]
        version = next((v for v in protocol.PROTOCOL_VERSIONS if v in offered), None)
        if version is None:
            raise ProtocolError(f"unsupported protocol version: {', '.join(offered)}")
        if version != "1.0" and (message.client_id is None or message.tool is None):
            missing = "client_id" if message.client_id is None else "tool"
            raise ProtocolError(f"invalid handshake format: protocol 2.0 needs {missing}")
        now = _now()
        if version == "1.0":
            self._anonymous += 1
            client_id = message.client_id or f"{message.client or 'v1'}-{self._anonymous}"
            self._speak_for(connection, client_id, message.tool or "patience", now)
            return protocol.encode(HandshakeResponse(status="ok", message="handshake successful"))
        assert message.client_id is not None and message.tool is not None
        self._speak_for(connection, message.client_id, message.tool, now)
        return protocol.encode(
            HandshakeResponse(
                status="ok",
                message="handshake successful",
                version=version,
                server_version=__version__,
                client_id=message.client_id,
            )
        )

    def _schedule(self, connection: Connection, message: ScheduleRequest) -> bytes:
        """Protocol 1.0: every answer is a booking (patience.daemon.bookings)."""
        client = self.client_for(connection)
        answer = self.coordinator.schedule_v1(client, message, _now(), time.time())
        if answer.fits:
            return protocol.encode(
                ScheduleResponse(
                    can_schedule=True,
                    reason="request scheduled",
                    message="request scheduled",
                    status="ok",
                    scheduled_at=_rfc3339(answer.start),
                    expires_at=_rfc3339(answer.start + message.window_ms / 1000.0),
                )
            )
        wait_until = _rfc3339(answer.start, round_up=True)
        limit = f"{answer.limit} per {format_duration(answer.window)}"
        if answer.never:
            reason = (
                f"{len(message.retry_offsets)} planned attempts (offsets"
                f" {_offsets(message.retry_offsets)}) can never fit the limit of"
                f" {message.resource_id}, {limit}; its first attempt is booked at {wait_until}"
            )
            self._warn(
                f"never-fits:{message.resource_id}", f"protocol 1.0 client {client.id}: {reason}"
            )
        else:
            reason = (
                f"the limit of {message.resource_id}, {limit}, is reached; booked from {wait_until}"
            )
        return protocol.encode(
            ScheduleResponse(
                can_schedule=False,
                reason=reason,
                message=reason,
                status="ok",
                wait_until=wait_until,
            )
        )

    def _register(self, connection: Connection, message: RegisterRequest) -> bytes:
        client = self.client_for(connection)
        self.coordinator.register_v1(client, message.requests, _now(), time.time())
        return protocol.encode(
            RegisterResponse(success=True, status="ok", message="requests registered successfully")
        )

    def _run_metrics(self, connection: Connection, message: RunMetrics) -> bytes:
        """The Go tool's metrics: one record per attempt, under its derived resource id."""
        command = message.command.split()
        resource_id = f"cmd-{os.path.basename(command[0])}" if command else "cmd-unknown"
        attempts = message.attempts or []
        records = [
            ExecutionMetrics(
                tool="patience",
                resource_id=resource_id,
                start_time=max(0.0, message.timestamp),
                duration=max(0.0, attempt.duration_seconds),
                success=attempt.success,
                exit_code=attempt.exit_code,
                command=command,
                attempt_number=number,
                labels={"protocol": "1.0", "final_status": message.final_status[:64]},
            )
            for number, attempt in enumerate(attempts[:1000], 1)
        ]
        accepted = self._store(connection, records) if records else 0
        return protocol.encode(MetricsResponse(accepted=accepted))

    def _acquire(self, connection: Connection, message: Acquire) -> bytes | Waiter:
        client = self.client_for(connection)
        now = _now()
        result = self.coordinator.acquire(client, message, now)
        if isinstance(result, Waiter):
            self.waiters[result] = connection
            self._arm(now)
            return result
        return protocol.encode(result)

    def _report_grants(self, connection: Connection, message: ReportGrants) -> bytes:
        """A client back from an outage: its grants of the last window (Unix seconds) count."""
        now = _now()
        offset = time.time() - now
        times = [at - offset for at in message.times]
        counted = self.coordinator.report_grants(self.client_for(connection), message, times, now)
        self._arm(now)
        return protocol.encode(ReportGrantsResponse(counted=counted))

    def _register_schedule(self, connection: Connection, message: RegisterSchedule) -> bytes:
        self.coordinator.register_schedule(self.client_for(connection), message, _now())
        return protocol.encode(RegisterScheduleResponse(status="ok"))

    def _metrics(self, connection: Connection, message: Metrics) -> bytes:
        return protocol.encode(MetricsResponse(accepted=self._store(connection, message.records)))

    def _store(self, connection: Connection, records: list[ExecutionMetrics]) -> int:
        if self.store is None:
            raise CoordinatorError(
                "metrics are disabled in this daemon (set [daemon] metrics_enabled = true)"
            )
        client = self.client_for(connection)
        try:
            fresh = self.store.unseen(records)  # a resent record is acknowledged, not counted
            self.coordinator.record_executions(client, fresh, _now())
            self.store.add(fresh, client.id)
        except CoordinatorError:
            raise
        except Exception as exc:
            log.error("could not store metrics: %s", exc)
            raise CoordinatorError(f"could not store the metrics: {exc}") from None
        return len(records)

    def _query(self, connection: Connection, message: Query) -> bytes:
        if self.store is None:
            raise CoordinatorError(
                "metrics are disabled in this daemon (set [daemon] metrics_enabled = true)"
            )
        span = message.time_range
        start = span.start if span else None
        end = span.end if span else None
        if start is not None and end is not None and end < start:
            raise ProtocolError("invalid query format: time_range.end is before time_range.start")
        tools = list(message.tools or [])
        if message.query == "resource_summary":
            results = self.store.resource_summary(message.resource_id, start, end, tools)
            for row in results:
                row["active_clients"] = self.coordinator.active_clients(str(row["resource_id"]))
        elif message.query == "tool_comparison":
            results = self.store.tool_comparison(message.resource_id, start, end, tools)
        else:
            self._flush_usage()
            results = self.store.rate_limit_usage(message.resource_id, start, end, tools)
            for row in results:
                resource = self.coordinator.resources.get(str(row["resource_id"]))
                spec = resource.spec if resource is not None else None
                row["limit"] = spec.limit if spec else None
                row["window"] = spec.window if spec else None
                row["limit_source"] = spec.source if spec else None
        return protocol.encode(QueryResponse(query=message.query, results=results))

    def _resource_state(self, connection: Connection, message: ResourceStateRequest) -> bytes:
        now = _now()
        resources = self.coordinator.resource_state(message.resource_id, now, time.time() - now)
        return protocol.encode(ResourceStateResponse(resources=resources))

    def _ping(self, connection: Connection, message: Ping) -> bytes:
        return protocol.encode(Pong(time=time.time()))

    def _status(self, connection: Connection, message: Status) -> bytes:
        return protocol.encode(
            StatusResponse(
                pid=os.getpid(),
                version=__version__,
                uptime=time.time() - self.started,
                socket=self.socket_path,
                protocol_versions=list(protocol.PROTOCOL_VERSIONS),
                resources=len(self.coordinator.resources),
                clients=len(self.coordinator.clients),
                connections=len(self.connections),
                waiting=len(self.waiters) + self.coordinator.sleeping_v1(time.time()),
                metrics_enabled=self.store is not None,
                backend="redis" if self.admission is not None else "memory",
                redis_url=self.admission.url if self.admission is not None else None,
                redis_unreachable_since=(
                    self.admission.unreachable_since if self.admission is not None else None
                ),
            )
        )

    # ---- waiting requests --------------------------------------------------------------------

    def _arm(self, now: float | None = None) -> None:
        """Make sure the timer fires by the coordinator's next wake-up."""
        wake = self.coordinator.next_wakeup()
        if wake >= self._timer_at or wake == float("inf"):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().call_at(wake, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = float("inf")
        now = _now()
        # Redis is asked first, so that a request that may not wait is asked before its deadline.
        resolved = self.admission.kick(now) if self.admission is not None else []
        self._deliver(resolved + self.coordinator.poll(now))

    def _deliver(self, resolved: list[tuple[Waiter, AcquireResponse]]) -> None:
        """Send the answers to the connections still waiting for them; re-arm the timer."""
        for waiter, response in resolved:
            connection = self.waiters.pop(waiter, None)
            if connection is not None:
                connection.resolve(waiter, protocol.encode(response))
        self._arm()


class Connection(asyncio.Protocol):
    """One client connection: splits lines, keeps replies in request order."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.client: Client | None = None
        self.client_ids: set[str] = set()  # every id it has spoken for (MAX_CLIENT_IDS)
        self.uid = -1  # the peer's, when the system tells
        self.buffer = b""
        self.line_began = 0.0  # when the unfinished line in `buffer` began
        self.outbox: deque[bytes | Waiter] = deque()  # replies not yet sent, in request order
        self.last_active = 0.0  # the last request (not a blank line) or reply
        self.paused_by_outbox = False
        self.paused_by_writer = False
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        peer = _peer(transport.get_extra_info("socket"))
        refusal = self.daemon.admit(peer)
        if refusal is not None:
            # Say why, then only wait for the client to hang up: closing on it while its first
            # request is unread would reset the connection and lose our reply.
            self.refused = True
            self.transport.write(protocol.encode(ErrorResponse(error=refusal)))
            self.transport.write_eof()
            asyncio.get_running_loop().call_later(REFUSED_LINGER, self.transport.close)
            return
        self.daemon.connections.add(self)
        self.uid = peer[0] if peer is not None else -1
        self.last_active = _now()

    def data_received(self, data: bytes) -> None:
        if self.refused or self.transport.is_closing():
            return
        now = began = _now()
        if self.buffer:
            began = self.line_began  # the unfinished line goes on
            self.daemon.buffered -= len(self.buffer)
            data = self.buffer + data
            self.buffer = b""
        if data.endswith(b"\n") and data.count(b"\n") == 1:  # the usual case: one request
            lines = [data[:-1]]
        else:
            lines = data.split(b"\n")
            rest = lines.pop()
            if rest:
                if len(rest) > protocol.MAX_LINE:
                    self._refuse(f"line longer than {protocol.MAX_LINE} bytes; closing")
                    return
                if self.daemon.buffered + len(rest) > MAX_BUFFERED:
                    self._refuse("the daemon is busy (too much unfinished input); retry later")
                    return
                self.buffer = rest
                self.line_began = now if lines else began
                self.daemon.buffered += len(rest)
        for line in lines:
            if len(line) > protocol.MAX_LINE:
                self._refuse(f"line longer than {protocol.MAX_LINE} bytes; closing")
                return
            if line.strip():
                self.last_active = now
                self._answer(self.daemon.handle(self, line))

    def _answer(self, reply: bytes | Waiter) -> None:
        if not self.outbox and isinstance(reply, bytes):
            self.transport.write(reply)
            return
        self.outbox.append(reply)
        if len(self.outbox) >= MAX_PENDING and not self.paused_by_outbox:
            self.paused_by_outbox = True
            self._update_reading()

    def resolve(self, waiter: Waiter, reply: bytes) -> None:
        """A waiting request got its answer: send it and whatever queued up behind it."""
        outbox = self.outbox
        for index, item in enumerate(outbox):
            if item is waiter:
                outbox[index] = reply
                break
        if self.transport.is_closing():
            return
        while outbox and isinstance(outbox[0], bytes):
            self.transport.write(outbox.popleft())  # type: ignore[arg-type]
        self.last_active = _now()
        if self.paused_by_outbox and len(outbox) < MAX_PENDING // 2:
            self.paused_by_outbox = False
            self._update_reading()

    def waiting(self) -> list[Waiter]:
        return [item for item in self.outbox if isinstance(item, Waiter)]

    def expire(self, now: float, idle_timeout: float, line_timeout: float) -> None:
        """Close the connection if a line stayed unfinished past `line_timeout` (with an error:
        a byte at a time must not hold a connection open) or no request came for
        `idle_timeout` (blank lines are none). One waiting for a reply is neither; a line's
        time counts from our last reply too, as we stop reading while replies are held back."""
        if self.outbox:
            return
        if self.buffer and now - max(self.line_began, self.last_active) > line_timeout:
            self._refuse(
                f"no complete line within {format_duration(line_timeout)}"
                " (daemon.line_timeout); closing"
            )
        elif now - self.last_active > idle_timeout:
            self.transport.close()

    def pause_writing(self) -> None:
        self.paused_by_writer = True
        self._update_reading()

    def resume_writing(self) -> None:
        self.paused_by_writer = False
        self._update_reading()

    def _update_reading(self) -> None:
        if self.transport.is_closing():
            return
        if self.paused_by_outbox or self.paused_by_writer:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def eof_received(self) -> bool:
        """The client finished sending. A last line without newline is still a request (the
        Go tool's metrics ingestion ends that way); waiting requests are abandoned."""
        if self.buffer and not self.refused:
            rest, self.buffer = self.buffer, b""
            self.daemon.buffered -= len(rest)
            if rest.strip():
                self._answer(self.daemon.handle(self, rest))
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self.buffer:
            self.daemon.buffered -= len(self.buffer)
            self.buffer = b""
        if self in self.daemon.connections:
            self.daemon.forget(self)
        self.outbox.clear()

    def _refuse(self, message: str) -> None:
        if self.buffer:
            self.daemon.buffered -= len(self.buffer)
            self.buffer = b""
        self.transport.write(protocol.encode(ErrorResponse(error=message)))
        self.transport.close()


def _peer(sock: socket.socket | None) -> tuple[int, int] | None:
    """The (uid, gid) of the process at the other end, where the system tells (SO_PEERCRED)."""
    if sock is None or not hasattr(socket, "SO_PEERCRED"):
        return None
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _, uid, gid = struct.unpack("3i", creds)
    return uid, gid


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


def _now() -> float:
    return time.monotonic()  # asyncio's loop.time() is this clock too


def _rfc3339(unix: float, round_up: bool = False) -> str:
    """RFC 3339 UTC with milliseconds, valid for any year Go can print (0001 onwards)."""
    from datetime import UTC, datetime, timedelta

    # Up, via whole microseconds: a time that is a whole millisecond already (as a booked
    # wait_until is) must not move a millisecond through float error.
    millis = -(-round(unix * 1e6) // 1000) if round_up else unix * 1000 // 1
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        moment = epoch + timedelta(milliseconds=millis)
    except OverflowError:
        moment = datetime.min.replace(tzinfo=UTC) if unix < 0 else datetime.max.replace(tzinfo=UTC)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def _offsets(offsets_ms: list[int]) -> str:
    shown = ",".join(format_duration(ms / 1000) for ms in offsets_ms[:8])
    return shown + (",..." if len(offsets_ms) > 8 else "")


def _notify(state: str) -> None:
    """systemd's sd_notify, when NOTIFY_SOCKET is set (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(f"{state}\nMAINPID={os.getpid()}".encode(), address)
    except OSError as exc:
        log.warning("could not notify %s: %s", address, exc)


def _group_id(config: Config) -> int | None:
    name = config.text("daemon.peer_group")
    if name is None:
        return None
    import grp

    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        where = config.source("daemon.peer_group")  # file (or variable) and key
        raise StartError(f"{where}: no group named {name!r}", exit_code=2) from None


def _admission(
    config: Config,
    coordinator: Coordinator,
    deliver: Callable[[list[tuple[Waiter, AcquireResponse]]], None],
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
        return RedisAdmission(
            coordinator, url, config.text("daemon.redis_clock") == "redis", deliver
        )
    except ImportError:
        raise StartError(
            "daemon.backend \"redis\" needs the redis package (pip install 'patience-cli[redis]')",
            exit_code=2,
        ) from None
    except ValueError as exc:  # a URL redis-py cannot read
        where = config.source("daemon.redis_url")
        raise StartError(f"{where}: {exc}", exit_code=2) from None


def _write_pid(path: str, uid: int) -> None:
    try:
        paths.write_private_file(path, uid, "pid file", f"{os.getpid()}\n")
    except OSError as exc:
        raise paths.PathError(f"cannot write the pid file {path}: {exc.strerror}") from None


def _read_pid(path: str) -> int | None:
    """The pid in a pid file, only for a message: never read through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        with open(fd, encoding="ascii") as f:
            return int(f.read(32).strip())
    except (OSError, ValueError):
        return None


def _raise_fd_limit(wanted: int) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
