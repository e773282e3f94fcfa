"""The daemon options that `rpr` and `patience` share, and the configuration keys behind them.

Parsed on every start, so this module is cheap: the resource-id check and the coordination
itself (patience.coordination) are imported only when used.
"""

from __future__ import annotations

from patience.cliparse import Option, parse_choice
from patience.durations import positive_duration

__all__ = ["DAEMON_OPTIONS", "FAIL_MODES", "config_keys", "fail_mode", "resource_id", "socket_path"]

FAIL_MODES = ("share", "full", "closed")  # and "open", the first spelling of "share"


def resource_id(text: str) -> str:
    from patience.ratelimit.resources import validate_resource_id

    return validate_resource_id(text)


def fail_mode(text: str) -> str:
    if text == "open":
        return "share"
    return parse_choice(*FAIL_MODES)(text)


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
