"""A real local HTTP server that enforces a true rate limit, for the feedback tests: `limit`
requests per second as a token bucket (what most APIs run: GitHub's, Stripe's; a burst of up
to `limit` after a quiet second, never more than `limit` a second over time), and above it
`429 Too Many Requests` with `Retry-After` (whole seconds, as HTTP says). The limit can be
raised while it runs; every answer is counted with its time."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Limited:
    def __init__(self, limit: int) -> None:
        self.limit = limit  # tokens a second, and the bucket's size
        self.lock = threading.Lock()
        self.tokens = float(limit)
        self.at = time.monotonic()
        self.ok: list[float] = []
        self.refused: list[float] = []

    def admit(self, now: float) -> int | None:
        """None: served; else the Retry-After to send (whole seconds, at least 1)."""
        with self.lock:
            self.tokens = min(float(self.limit), self.tokens + (now - self.at) * self.limit)
            self.at = now
            if self.tokens >= 1.0:
                self.tokens -= 1.0
                self.ok.append(now)
                return None
            self.refused.append(now)
            return max(1, math.ceil((1.0 - self.tokens) / self.limit))

    def counts(self, start: float, end: float) -> tuple[int, int]:
        """(successes, refusals) answered in [start, end)."""
        with self.lock:
            ok = sum(1 for t in self.ok if start <= t < end)
            refused = sum(1 for t in self.refused if start <= t < end)
        return ok, refused


@contextmanager
def throttled_server(limit: int) -> Iterator[tuple[str, Limited]]:
    """(its URL, its limit) while it serves on 127.0.0.1."""
    state = Limited(limit)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            wait = state.admit(time.monotonic())
            body = b"ok\n" if wait is None else b"too many requests\n"
            self.send_response(200 if wait is None else 429)
            if wait is not None:
                self.send_header("Retry-After", str(wait))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", state
    finally:
        server.shutdown()
        server.server_close()
