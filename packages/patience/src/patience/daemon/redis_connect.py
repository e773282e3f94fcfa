"""The Redis client of the Redis backend, built from the daemon's configuration.

One place decides how the daemon reaches Redis (the URL, the timeouts, no blind retries), so
that the admissions (redis_admission) and the shared learned limits (learned_share) use the
same connection pool, and so that the set-ups redis-py supports are added here alone.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

__all__ = ["TIMEOUT", "connect", "redacted"]

TIMEOUT = 0.5  # seconds for connecting and for each call


def connect(url: str) -> Any:
    """An asyncio client for `url` (redis://, rediss://, unix://). ImportError without the
    redis package; ValueError for a URL redis-py cannot read."""
    import redis.asyncio
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    return redis.asyncio.Redis.from_url(
        url,
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )


def redacted(url: str) -> str:
    """The URL without credentials or options, for logs and status."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
