"""The daemon's HTTP side: a JSON API, Prometheus `/metrics` and a live dashboard.

Off by default; `patience-daemon --http ADDR:PORT` or `[daemon] http_listen` turns it on. It is
served from the daemon's own event loop and only reads (docs/http-api.md). This package's
`__init__` imports nothing, so the configuration schema can check an address through
`listen` without loading aiohttp; `server` is imported only when the HTTP side starts.
"""

__all__: list[str] = []
