"""The daemon options that `rpr` and `patience` share, the configuration keys behind them,
and the DaemonSettings both command lines build from them (`daemon_settings`).

Parsed on every start, so this module is cheap: the resource-id check, the socket's path
rules and the coordination itself (patience.coordination) are imported only when used.
"""

from __future__ import annotations

from patience.cliparse import Option, UsageError, parse_choice
from patience.durations import positive_duration

__all__ = [
    "DAEMON_OPTIONS",
    "config_keys",
    "daemon_settings",
    "fail_mode",
    "resource_id",
    "socket_path",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from patience.cliparse import Parsed
    from patience.config import Config
    from patience.settings import Limit
    from patience.settings.daemon import DaemonSchedule, DaemonSettings


def resource_id(text: str) -> str:
    from patience.ratelimit.resources import validate_resource_id

    return validate_resource_id(text)


def fail_mode(text: str) -> str:
    """--daemon-fail-mode: one of settings.FAIL_MODES, or "open", the first spelling of
    "share"."""
    from patience.settings import FAIL_MODES

    if text == "open":
        return "share"
    return parse_choice(*FAIL_MODES)(text)


def throttle_pattern(text: str) -> str:
    from patience.conditions import PatternError, compile_pattern

    try:
        compile_pattern(text, "")
    except PatternError as exc:
        raise ValueError(str(exc).removeprefix(": ")) from None
    return text


def throttle_exit(text: str) -> int:
    from patience.numbers import whole

    code = whole(text)
    if not 1 <= code <= 255:
        raise ValueError(f"{text} is not an exit status from 1 to 255")
    return code


def socket_path(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


DAEMON_OPTIONS = [
    Option(
        "daemon",
        "--daemon",
        negatable=True,
        help="take a token from patience-daemon before each start, and report each start",
    ),
    Option(
        "resource_id",
        "--resource-id",
        convert=resource_id,
        metavar="ID",
        help="the shared resource this command uses (default: detected from the command)",
    ),
    Option(
        "daemon_socket",
        "--daemon-socket",
        convert=socket_path,
        metavar="PATH",
        help="the daemon's Unix socket",
    ),
    Option(
        "daemon_timeout",
        "--daemon-timeout",
        convert=positive_duration,
        default=5.0,
        metavar="DUR",
        help="give up on one daemon request, or on starting the daemon, after DUR",
    ),
    Option(
        "daemon_auto_start",
        "--daemon-auto-start",
        default=True,
        negatable=True,
        help="start the daemon when it is not running",
    ),
    Option(
        "daemon_fail_mode",
        "--daemon-fail-mode",
        convert=fail_mode,
        metavar="MODE",
        help="daemon unreachable: share runs on within this client's share of the limit"
        " (default; also open), full within the whole limit, closed stops with an error",
    ),
    Option(
        "throttle_pattern",
        "--throttle-pattern",
        convert=throttle_pattern,
        metavar="RE",
        help="with --daemon: a start whose output matches RE was throttled by the server"
        " (besides 429, Retry-After, ...): tell the daemon, which slows every client",
    ),
    Option(
        "throttle_exit",
        "--throttle-exit",
        convert=throttle_exit,
        metavar="CODE",
        help="with --daemon: a start that exits with CODE was throttled (curl -f: 22)",
    ),
]


def config_keys(section: str) -> dict[str, str]:
    """Option dest -> configuration key, for Config.fill; `section` is "repeater" or
    "patience"."""
    return {
        "daemon": f"{section}.daemon_enabled",
        "daemon_socket": f"{section}.daemon_socket",
        "daemon_timeout": f"{section}.daemon_timeout",
        "daemon_auto_start": f"{section}.daemon_auto_start",
        "daemon_fail_mode": "rate_limiting.fail_mode",
    }


def daemon_settings(
    parsed: Parsed,
    config: Config,
    *,
    tool: str,
    prog: str,
    starts: str,
    metrics: bool,
    limit: Limit | None = None,
    paced: bool = False,
    labels: Mapping[str, str] | None = None,
    schedule: DaemonSchedule | None = None,
    show_waits: bool = False,
) -> DaemonSettings:
    """The DaemonSettings of a tool's command line (`tool`: repeater or patience, its
    configuration section): each daemon option as given, else as `config` sets it, else its
    default. `limit` is the tool's own (else the resource's configured one); the rest as
    DaemonSettings says; the throttle pattern and exit status as given, else the resource's
    configured ones. A value that cannot work is a usage error naming it."""
    from patience.ratelimit.learned import Learning
    from patience.settings.daemon import DaemonSettings

    keys = config_keys(tool)
    config.fill(parsed.values, parsed.explicit, keys)
    socket = _socket(parsed.text("daemon_socket"))
    resource = _resource(parsed, config.flag(f"{tool}.resource_detection"))
    where = {
        dest: "command line" if dest in parsed.explicit else config.source(key)
        for dest, key in keys.items()
    }
    configured = config.limit_for(resource)
    if limit is None and configured is not None:
        limit = configured.limit  # None for an entry that only says how its limit learns
    mode = parsed.text("daemon_fail_mode") or "share"  # the flag's, else the configuration's
    if "daemon_fail_mode" not in parsed.explicit and configured and configured.fallback:
        mode = configured.fallback  # the resource's own entry is more specific
        where["daemon_fail_mode"] = f"the configured entry of {resource}"
    learning = configured.learning if configured is not None else Learning()
    return DaemonSettings(
        tool=tool,
        prog=prog,
        starts=starts,
        socket_path=socket,
        resource_id=resource,
        timeout=parsed.number("daemon_timeout"),
        auto_start=parsed.flag("daemon_auto_start"),
        fail_mode=mode,
        coordinated=config.flag("rate_limiting.coordination_enabled"),
        metrics=metrics,
        log_level=config.text(f"{tool}.log_level"),
        limit=limit,
        paced=paced,
        labels=labels,
        schedule=schedule,
        sources=where,
        throttle_pattern=parsed.text("throttle_pattern") or learning.throttle_pattern,
        throttle_exit=parsed.maybe_whole("throttle_exit") or learning.throttle_exit,
        show_waits=show_waits,
    )


def _socket(given: str | None) -> str:
    """The daemon's socket: as given, else the environment's, else the per-user default."""
    from patience.daemon import paths

    try:
        socket = paths.resolve_socket(given or None)
        paths.check_socket_length(socket)
    except (paths.PathError, OSError) as exc:
        raise UsageError(f"daemon socket: {exc}") from None
    return socket


def _resource(parsed: Parsed, detect: bool) -> str:
    """--resource-id, else the id detected from the command (without detection, the
    program's generic one)."""
    from patience.ratelimit.resources import command_resource, detect_resource

    given = parsed.text("resource_id")
    if given:
        return given
    try:
        return detect_resource(parsed.command) if detect else command_resource(parsed.command[0])
    except ValueError as exc:
        raise UsageError(str(exc)) from None
