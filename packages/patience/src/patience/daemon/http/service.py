"""Turning the HTTP side on: `serve_http` reads `--http` / `[daemon] http_listen`, checks the
settings, binds the port and adds the server to the daemon's services, all before the daemon
prepares its socket, so that a bad setting or a port in use stops the start with a message
(exit 2 or 1) rather than a daemon without the HTTP side it was asked for.
"""

from __future__ import annotations

import socket
from typing import Protocol

from patience.config import Config
from patience.daemon.framing import Session
from patience.daemon.handlers import Handlers
from patience.daemon.http.listen import Listen, SettingsError, from_config
from patience.daemon.http.live import LiveView, Tracked
from patience.daemon.process import StartError
from patience.daemon.totals import Totals

__all__ = ["serve_http"]

INSTALL = "pip install 'patience-cli[http]'"


class _Service(Protocol):
    async def start(self) -> None: ...

    async def close(self) -> None: ...


class Serving(Protocol):
    """What the HTTP side needs of the daemon (patience.daemon.lifecycle.Daemon)."""

    started: float
    totals: Totals
    handlers: Handlers

    @property
    def coordinator(self) -> Tracked: ...

    def add_service(self, service: _Service) -> None: ...


def serve_http(daemon: Serving, config: Config, flag: str | None) -> None:
    """Add the HTTP server to `daemon` when `flag` (--http) or the configuration asks for it;
    StartError says why it cannot be."""
    try:
        settings = from_config(config, flag)
    except SettingsError as exc:
        raise StartError(str(exc), exit_code=2) from None
    if settings is None:
        return
    try:
        from patience.daemon.http.server import HttpServer
    except ImportError as exc:
        raise StartError(
            f"--http needs aiohttp and prometheus-client ({exc}): {INSTALL}", exit_code=2
        ) from None
    sock = _bind(settings.listen)
    session = Session()  # the HTTP side's own: it speaks for no client

    def handle(line: bytes) -> object:
        return daemon.handlers.handle(session, line)

    def totals() -> Totals:
        daemon.handlers.flush_usage()  # the usage counted since the last flush, up to now
        return daemon.totals

    view = LiveView(daemon.started, handle, totals, daemon.coordinator)
    daemon.add_service(HttpServer(settings, sock, view))


def _bind(listen: Listen) -> socket.socket:
    family = socket.AF_INET6 if ":" in listen.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((listen.host, listen.port))
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise StartError(
            f"cannot listen on {listen.url()} for --http: {exc.strerror}"
            " (is another program using the port? choose another with --http ADDR:PORT)"
        ) from None
    return sock
