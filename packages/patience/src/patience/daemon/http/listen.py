"""Where the HTTP side listens and who may ask it: the address, the bearer token, the Host
names accepted, and the cap on resources named in `/metrics`.

Pure and light (no aiohttp): the configuration schema checks `http_listen` with `parse_listen`,
and the daemon builds `HttpSettings` once at start, where a non-loopback address without a
token is refused before anything listens.
"""

from __future__ import annotations

import ipaddress

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.config import Config

__all__ = [
    "MIN_TOKEN_LENGTH",
    "HttpSettings",
    "Listen",
    "SettingsError",
    "from_config",
    "host_allowed",
    "parse_listen",
]

MIN_TOKEN_LENGTH = 16
_EXAMPLE = "such as 127.0.0.1:9464, [::1]:9464 or 0.0.0.0:9464"


class SettingsError(ValueError):
    """An HTTP setting that cannot be used; the message names it and the fix."""


class Listen:
    """An address to bind: an IP literal (`localhost` is 127.0.0.1) and a port (0: any free
    one, which the daemon's log names)."""

    __slots__ = ("host", "loopback", "port")

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.loopback = ipaddress.ip_address(host).is_loopback

    def url(self, port: int | None = None) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port if port is None else port}/"


def parse_listen(text: str) -> Listen:
    """`ADDR:PORT` with ADDR an IPv4 address, `[IPv6]` or `localhost`; a ValueError says what
    is wrong and shows the form."""
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ValueError(f'"{text}" is not ADDR:PORT ({_EXAMPLE})')
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f'"{text}": put an IPv6 address in brackets ({_EXAMPLE})')
    if host.lower() == "localhost":
        host = "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f'"{text}": {host} is not an IP address (bind to an address, {_EXAMPLE})'
        ) from None
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise ValueError(f'"{text}": the port must be a number from 0 to 65535 ({_EXAMPLE})')
    return Listen(str(address), int(port_text))


class HttpSettings:
    """What the HTTP side needs, checked together: a non-loopback address only with a token."""

    __slots__ = ("hosts", "listen", "max_resources", "token")

    def __init__(
        self,
        listen: Listen,
        token: str | None,
        max_resources: int,
        hosts: frozenset[str] = frozenset(),
    ) -> None:
        if token is not None and (len(token) < MIN_TOKEN_LENGTH or not token.isprintable()):
            raise SettingsError(
                f"daemon.http_token must be at least {MIN_TOKEN_LENGTH} printable characters"
                " (make one with: openssl rand -hex 32)"
            )
        if token is None and not listen.loopback:
            raise SettingsError(
                f"daemon.http_listen {listen.host}:{listen.port} is not a loopback address:"
                " set daemon.http_token (every request must then carry Authorization: Bearer"
                " TOKEN), or listen on 127.0.0.1"
            )
        self.listen = listen
        self.token = token
        self.max_resources = max_resources
        self.hosts = frozenset(name.lower() for name in hosts)


def host_allowed(header: str | None, extra: frozenset[str]) -> bool:
    """Whether a request's Host header names us in a way DNS rebinding cannot fake: an IP
    literal, `localhost`, or a name the operator listed (`extra`, lower case). A page from
    another site that rebinds its own name to our address still sends its own name."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):  # [IPv6] or [IPv6]:port
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return False
        return _port_ok(rest[1:]) and _is_ip(name)
    name, _, port = host.partition(":")
    return _port_ok(port) and (name == "localhost" or name in extra or _is_ip(name))


def _port_ok(text: str) -> bool:
    return not text or (text.isascii() and text.isdigit() and len(text) <= 5)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def from_config(config: Config, flag: str | None) -> HttpSettings | None:
    """The HTTP settings from `--http` (`flag`) or `[daemon] http_listen`, or None when neither
    asks for HTTP (the default)."""
    text = flag or config.text("daemon.http_listen")
    if text is None:
        return None
    try:
        listen = parse_listen(text)
    except ValueError as exc:
        where = "--http" if flag else config.source("daemon.http_listen")
        raise SettingsError(f"{where}: {exc}") from None
    hosts = (config.text("daemon.http_hosts") or "").replace(",", " ").split()
    return HttpSettings(
        listen,
        config.text("daemon.http_token"),
        config.number("daemon.http_max_resources"),
        frozenset(hosts),
    )
