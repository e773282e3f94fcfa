"""The HTTP server: an aiohttp application on the daemon's own event loop.

Every request passes the guard first: only GET and HEAD (nothing here changes state), a Host
header that DNS rebinding cannot fake (listen.host_allowed), and with `http_token` set the
bearer token (compared in constant time). The dashboard's page, script and style sheet hold no
data and are served without the token, so a browser can load them; everything they show comes
from the API, which needs it. Every response carries a Content-Security-Policy that allows
scripts and styles from this server only (no inline script), and headers that stop framing,
sniffing and referrers.
"""

from __future__ import annotations

import hmac
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client.exposition import choose_encoder

from patience.daemon.http.api import Api, ApiError
from patience.daemon.http.exposition import registry_for
from patience.daemon.http.listen import HttpSettings, host_allowed
from patience.daemon.http.view import DaemonView

__all__ = ["CSP", "HttpServer", "make_app"]

log = logging.getLogger("patience.daemon.http")

STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
TYPES = {
    ".html": "text/html",
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message}, status=status, headers=headers)


def _guard(settings: HttpSettings) -> Middleware:
    expected = f"Bearer {settings.token}".encode() if settings.token else None

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            return _error(405, "read-only: only GET and HEAD", {"Allow": "GET, HEAD"})
        if not host_allowed(request.headers.get("Host"), settings.hosts):
            return _error(
                403,
                "this Host header is not accepted: use an IP address or localhost,"
                " or list the name in [daemon] http_hosts",
            )
        public = request.path == "/" or request.path.startswith("/static/")
        if expected is not None and not public:
            given = request.headers.get("Authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return _error(
                    401,
                    "this daemon needs the header Authorization: Bearer TOKEN"
                    " ([daemon] http_token)",
                    {"WWW-Authenticate": 'Bearer realm="patience-daemon"'},
                )
        try:
            return await handler(request)
        except ApiError as exc:
            return _error(exc.status, str(exc))
        except web.HTTPException as exc:  # the router's 404 and 405
            return _error(
                exc.status, exc.reason, {k: v for k, v in exc.headers.items() if k == "Allow"}
            )

    return guard


async def _secure(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.update(HEADERS)


def _static_routes() -> list[web.RouteDef]:
    """The dashboard's files, by name only (nothing else on disk can be reached)."""
    files = {p.name: p for p in STATIC.iterdir() if p.is_file() and p.suffix in TYPES}

    def serve(path: Path) -> Handler:
        body = path.read_bytes()
        kind = TYPES[path.suffix]

        async def handler(request: web.Request) -> web.StreamResponse:
            return web.Response(body=body, content_type=kind, charset="utf-8")

        return handler

    routes = [web.get(f"/static/{name}", serve(path)) for name, path in files.items()]
    return [web.get("/", serve(files["index.html"])), *routes]


def make_app(settings: HttpSettings, view: DaemonView) -> web.Application:
    app = web.Application(middlewares=[_guard(settings)], client_max_size=1024)
    app.on_response_prepare.append(_secure)
    registry = registry_for(view)

    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        return web.Response(body=encoder(registry), headers={"Content-Type": content_type})

    app.add_routes([web.get("/metrics", metrics), *Api(view).routes(), *_static_routes()])
    return app


class HttpServer:
    """A service of the daemon's life cycle (started once the socket is served, closed after
    its connections), on a listening socket bound at start-up (patience.daemon.http.service)."""

    def __init__(self, settings: HttpSettings, sock: socket.socket, view: DaemonView) -> None:
        self.settings = settings
        self.sock = sock
        self.runner = web.AppRunner(make_app(settings, view), access_log=None, handle_signals=False)

    async def start(self) -> None:
        await self.runner.setup()
        await web.SockSite(self.runner, self.sock).start()
        port = int(self.sock.getsockname()[1])
        log.info("HTTP API, /metrics and dashboard on %s", self.settings.listen.url(port))

    async def close(self) -> None:
        await self.runner.cleanup()
