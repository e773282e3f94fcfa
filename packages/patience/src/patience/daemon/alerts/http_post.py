"""One HTTP POST of a JSON body on asyncio streams: all a webhook needs, without making the
daemon depend on an HTTP client library (aiohttp is an optional extra). http:// and https://;
user:password in the URL is sent as basic authentication."""

from __future__ import annotations

import asyncio
import base64
import ssl
from urllib.parse import unquote, urlsplit

__all__ = ["PostError", "post_json", "redact"]

MAX_HEAD = 64 * 1024  # bytes of the answer read (status line and headers)


class PostError(Exception):
    """The receiver could not be reached or did not answer 2xx."""


def redact(url: str) -> str:
    """The URL without its credentials, for logs and replies."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()


async def post_json(url: str, body: bytes, user_agent: str) -> int:
    """POST `body` to `url`; returns the status (2xx), else raises PostError. The caller
    bounds the time (asyncio.timeout)."""
    parts = urlsplit(url)
    secure = parts.scheme == "https"
    host = parts.hostname or ""
    port = parts.port or (443 if secure else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    head = [
        f"POST {path} HTTP/1.1",
        f"Host: {parts.netloc.rpartition('@')[2]}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        f"User-Agent: {user_agent}",
        "Connection: close",
    ]
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        head.append("Authorization: Basic " + base64.b64encode(pair.encode()).decode())
    try:
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl.create_default_context() if secure else None
        )
    except OSError as exc:
        raise PostError(f"cannot connect: {exc.strerror or exc}") from None
    try:
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read(MAX_HEAD)  # the rest is not needed; read some so the peer can close
    except OSError as exc:
        raise PostError(f"connection lost: {exc.strerror or exc}") from None
    finally:
        writer.close()
    fields = status_line.decode("latin-1").split()
    if len(fields) < 2 or not fields[1].isdigit():
        raise PostError(f"not an HTTP answer: {status_line[:80]!r}")
    status = int(fields[1])
    if not 200 <= status < 300:
        raise PostError(f"HTTP {status}")
    return status
