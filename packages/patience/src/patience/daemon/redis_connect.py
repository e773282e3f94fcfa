"""The Redis client of the Redis backend, built from the daemon's configuration.

One place decides how the daemon reaches Redis (the URL, the timeouts, no blind retries), so
that the admissions (redis_admission) and the shared learned limits (learned_share) use the
same connection pool, whichever set-up redis-py is asked to reach:

- one server: `redis://`, `rediss://` (TLS) or `unix://`, as redis-py reads them;
- Redis Sentinel: `redis+sentinel://[[USER]:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER[/DB]`,
  or `rediss+sentinel://` for TLS to the sentinels and the master alike (verified against the
  system's certificate authorities, or SSL_CERT_FILE's). The sentinels name the current
  master; redis-py asks them again at each new connection, so a failover needs no restart.
  The credentials are the master's (the sentinels are asked without any);
- Redis Cluster (`redis_cluster = true`): the URL is one node's, a seed from which
  redis-py learns the others. Every key of a resource shares a hash slot (`{resource}`), so
  each script call goes to one node.

The URL's grammar is checked when the configuration is read (`check_url`: `patience config
validate` reports it) and its combination with `redis_cluster` when the daemon starts
(`connect`). No message repeats the URL: it may hold a password.
"""

from __future__ import annotations

from typing import Any, NamedTuple
from urllib.parse import unquote, urlsplit

__all__ = ["SENTINELS", "TIMEOUT", "Sentinels", "check_url", "connect", "errors", "redacted"]

TIMEOUT = 0.5  # seconds for connecting and for each call
SENTINELS = ("redis+sentinel", "rediss+sentinel")  # the second with TLS
SCHEMES = ("redis", "rediss", "unix", *SENTINELS)
_SHAPE = "redis+sentinel://HOST:PORT,HOST:PORT/MASTER"
MAX_SENTINELS = 16  # each is asked in turn, up to TIMEOUT, whenever the master is looked up


class Sentinels(NamedTuple):
    """A `redis+sentinel://` or `rediss+sentinel://` URL, read."""

    hosts: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None
    tls: bool


def check_url(url: str) -> None:
    """ValueError naming what is wrong with `url` and how to write it."""
    scheme, sep, rest = url.partition("://")
    if not (sep and rest and scheme in SCHEMES):
        got = f"{scheme}://..." if sep else "no scheme"
        raise ValueError(
            "expected a Redis URL (redis://HOST:6379/0, rediss://... with TLS, unix:///PATH,"
            f" or {_SHAPE} for Sentinel), got {got}"
        )
    if scheme in SENTINELS:
        sentinels(url)


def sentinels(url: str) -> Sentinels:
    """The parts of a Sentinel URL; ValueError for a malformed one."""
    parts = urlsplit(url)
    if parts.query or parts.fragment:
        raise ValueError(f"a Sentinel URL takes no ?options or #fragment: write {_SHAPE}")
    credentials, at, hostlist = parts.netloc.rpartition("@")
    username, _, password = credentials.partition(":")
    if not hostlist:
        raise ValueError(f"the Sentinel URL names no sentinel: write {_SHAPE}")
    if hostlist.count(",") >= MAX_SENTINELS:
        raise ValueError(
            f"the Sentinel URL names more than {MAX_SENTINELS} sentinels: name a few of them"
            " (each is asked in turn when the master is looked up)"
        )
    hosts = [_host_port(item) for item in hostlist.split(",")]
    master, _, db = parts.path.removeprefix("/").partition("/")
    if not master:
        raise ValueError(
            f"the Sentinel URL names no master: add the name the sentinels monitor, {_SHAPE}"
        )
    if not (db == "" or (db.isascii() and db.isdigit() and len(db) <= 9)):
        raise ValueError(
            "the Sentinel URL's database (after the master's name) must be a number below"
            f" 10^9, got {db[:20]!r}"
        )
    return Sentinels(
        hosts,
        unquote(master),
        int(db or 0),
        unquote(username) if at and username else None,
        unquote(password) if at and password else None,
        parts.scheme == "rediss+sentinel",
    )


def _host_port(item: str) -> tuple[str, int]:
    host, colon, port = item.rpartition(":")
    shown = item if len(item) <= 60 else item[:60] + "..."
    if not colon:
        raise ValueError(f"sentinel {shown!r} has no port: write HOST:PORT (often HOST:26379)")
    host = host.removeprefix("[").removesuffix("]")
    if not host:
        raise ValueError(f"sentinel {shown!r} has no host before its port: write HOST:PORT")
    if not (port.isascii() and port.isdigit() and len(port) <= 5 and 0 < int(port) < 65536):
        raise ValueError(f"sentinel {shown!r} has a bad port: write a number from 1 to 65535")
    return host, int(port)


def connect(url: str, cluster: bool) -> Any:
    """An asyncio client for `url` (a Redis Cluster seed when `cluster`). ImportError
    without the redis package; ValueError for a URL that cannot be used so."""
    check_url(url)
    scheme = url.partition("://")[0]
    if cluster and scheme not in ("redis", "rediss"):
        raise ValueError(
            f"redis_cluster = true needs a redis:// or rediss:// URL of one cluster node, such"
            f" as redis://HOST:7000 (a cluster is reached over TCP, and it is not Sentinel's):"
            f" got {scheme}://"
        )
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {
        "socket_timeout": TIMEOUT,
        "socket_connect_timeout": TIMEOUT,
        "retry": Retry(NoBackoff(), 0),
    }
    if scheme in SENTINELS:
        return _sentinel_client(sentinels(url), options)
    if cluster:
        return _cluster_client(url, options)
    import redis.asyncio

    return redis.asyncio.Redis.from_url(url, **options)


def _sentinel_client(target: Sentinels, options: dict[str, Any]) -> Any:
    """The master's client; closing it closes the sentinels' connections too."""
    from redis.asyncio import Redis
    from redis.asyncio.sentinel import MasterNotFoundError, Sentinel
    from redis.exceptions import ConnectionError, TimeoutError

    class Watchers(Sentinel):
        """redis-py's, but when no sentinel names a master, the error says what each one
        answered in a line fit for a log (redis-py's repeats each client's every setting)."""

        async def discover_master(self, service_name: str) -> tuple[str, int]:
            problems = []
            for sentinel in self.sentinels:
                where = "{host}:{port}".format(**sentinel.connection_pool.connection_kwargs)
                try:
                    masters = await sentinel.sentinel_masters()
                except (ConnectionError, TimeoutError) as exc:
                    problems.append(f"{where}: {exc}")
                    continue
                state = masters.get(service_name) if isinstance(masters, dict) else None
                if state and self.check_master_state(state, service_name):
                    return state["ip"], state["port"]
                problems.append(f"{where}: no master {service_name!r} that is up")
            raise MasterNotFoundError(f"no sentinel names a master: {'; '.join(problems)}")

    if target.tls:
        options["ssl"] = True
    manager = Watchers(target.hosts, sentinel_kwargs=dict(options), **options)  # type: ignore[no-untyped-call]

    class Master(Redis):
        async def aclose(self, close_connection_pool: bool | None = None) -> None:
            await super().aclose(close_connection_pool)
            await manager.aclose()

    return manager.master_for(
        target.master,
        redis_class=Master,
        db=target.db,
        username=target.username,
        password=target.password,
    )


def _cluster_client(url: str, options: dict[str, Any]) -> Any:
    """A cluster client whose ping asks every master: with one of them gone, some resources'
    slots cannot be served, and the daemon should know before their requests fail."""
    from redis.asyncio.cluster import RedisCluster

    if urlsplit(url).path.strip("/") not in ("", "0"):
        raise ValueError(
            "redis_cluster = true: a cluster has only database 0: remove the database from the"
            " URL (redis://HOST:PORT)"
        )
    client = RedisCluster.from_url(url, **options)
    client.command_flags["PING"] = RedisCluster.PRIMARIES
    return client


def errors() -> tuple[type[BaseException], ...]:
    """What a client raises when Redis cannot be used: redis-py's cluster client reports an
    unreachable cluster outside RedisError."""
    import redis
    from redis.exceptions import RedisClusterException

    return (redis.RedisError, RedisClusterException, OSError)


def redacted(url: str) -> str:
    """The URL without credentials or options, for logs and status."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path}"
