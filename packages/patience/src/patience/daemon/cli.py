"""`patience-daemon`: run the daemon in the foreground, or ask a running one for its status or
to stop. Usage errors and bad configuration exit 2; a daemon that cannot start exits 1."""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from patience import __version__
from patience.cliparse import Option, Parsed, UsageError, parse, render_options
from patience.config import Config, ConfigError, load
from patience.config.schema import LOG_LEVEL
from patience.daemon import paths
from patience.durations import format_duration, parse_duration
from patience.exits import ExitStatus
from patience.stderr import say, write

if TYPE_CHECKING:
    from patience.daemon.lifecycle import Intervals

__all__ = ["OPTIONS", "PROG", "main"]

PROG = "patience-daemon"
FLEET_WAIT = 3.0  # seconds `status --fleet` waits for a fresh view of the fleet

_COMMON = [
    Option("socket", "--socket", "-s", convert=str, metavar="PATH", help="the Unix socket"),
    Option(
        "config",
        "--config",
        "-c",
        convert=str,
        metavar="FILE",
        help="a configuration file read after the usual ones",
    ),
]
OPTIONS = {
    "run": [
        *_COMMON,
        Option(
            "log_level",
            "--log-level",
            convert=LOG_LEVEL.parse,
            metavar="LEVEL",
            help="debug, info, warning or error (default: [daemon] log_level, else info)",
        ),
        Option(
            "http",
            "--http",
            convert=str,
            metavar="ADDR:PORT",
            help="serve the HTTP API, /metrics and dashboard (default: [daemon] http_listen)",
        ),
    ],
    "status": [
        *_COMMON,
        Option("fleet", "--fleet", help="every live daemon sharing this one's Redis"),
    ],
    "stop": [
        *_COMMON,
        Option(
            "timeout",
            "--timeout",
            convert=parse_duration,
            default=10.0,
            metavar="DURATION",
            help="how long to wait for the daemon to exit",
        ),
    ],
}

USAGE = f"""usage: {PROG} [--socket PATH] [--config FILE] [--log-level LEVEL] [--http ADDR:PORT]
       {PROG} status [--socket PATH] [--config FILE] [--fleet]
       {PROG} stop [--socket PATH] [--config FILE] [--timeout DURATION]

Runs the shared rate-limit and metrics daemon of rpr and patience in the foreground.
Socket: --socket, else $PATIENCE_DAEMON_SOCKET, else [daemon] socket_path, else
$XDG_RUNTIME_DIR/patience/daemon.sock (root: /run/patience/daemon.sock).
Configuration: the files rpr and patience read (/etc/patience/config.toml, then
~/.config/patience/config.toml, ./.patience.toml, --config or $PATIENCE_CONFIG_FILE) and
the environment; the flags above win. SIGHUP reads them all again; SIGTERM stops.

options:
{render_options(OPTIONS["run"])}
  -h, --help                       show this help
  --version                        show the version
"""


def main(argv: list[str] | None = None, intervals: Intervals | None = None) -> int:
    """`intervals`: the daemon's housekeeping intervals (tests pass short ones)."""
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return ExitStatus.OK
    if args and args[0] == "--version":
        print(f"{PROG} {__version__}")
        return ExitStatus.OK
    command = args[0] if args and args[0] in ("status", "stop") else "run"
    rest = args[1:] if command != "run" else args
    try:
        parsed = parse(OPTIONS[command], rest, PROG if command == "run" else f"{PROG} {command}")
        if parsed.positionals or parsed.saw_separator:
            extra = parsed.positionals[0] if parsed.positionals else "--"
            raise UsageError(f'unexpected argument "{extra}" (see {PROG} --help)')
        config = load(PROG, config_file=parsed["config"])  # type: ignore[arg-type]
    except (UsageError, ConfigError) as exc:
        message = str(exc)  # an unknown flag comes already prefixed with its context
        if message.startswith(PROG):
            write(f"{message}\n")
        else:
            say(PROG, message)
        return ExitStatus.USAGE
    for warning in config.warnings:
        say(PROG, f"warning: {warning}")
    try:
        socket_path = paths.resolve_socket(
            parsed["socket"],  # type: ignore[arg-type]
            config.text("daemon.socket_path"),
        )
    except (paths.PathError, OSError) as exc:
        say(PROG, str(exc))
        return ExitStatus.FAILED
    if command == "status":
        return _fleet(socket_path) if parsed["fleet"] else _status(socket_path)
    if command == "stop":
        return _stop(socket_path, parsed["timeout"])  # type: ignore[arg-type]
    return _run(parsed, config, socket_path, intervals)


def _run(parsed: Parsed, config: Config, socket_path: str, intervals: Intervals | None) -> int:
    import asyncio
    import logging

    from patience.daemon.http.service import serve_http
    from patience.daemon.lifecycle import Daemon, StartError

    log_level = parsed["log_level"]
    assert log_level is None or isinstance(log_level, str)
    logging.basicConfig(
        stream=sys.stderr,
        level=(log_level or config.text("daemon.log_level") or "info").upper(),
        format=f"{PROG}[%(process)d] %(levelname)s: %(message)s",
    )
    try:
        storage = config.text("daemon.storage_path") or paths.default_storage(
            socket_path, os.environ, os.geteuid()
        )
        daemon = Daemon(
            config,
            socket_path,
            storage,
            parsed["config"],  # type: ignore[arg-type]
            log_level,
            intervals,
        )
        serve_http(daemon, config, parsed["http"])  # type: ignore[arg-type]
        daemon.prepare()
    except StartError as exc:
        say(PROG, str(exc))
        return exc.exit_code
    except paths.PathError as exc:
        say(PROG, str(exc))
        return ExitStatus.FAILED
    asyncio.run(daemon.serve())
    return ExitStatus.OK


def _status(socket_path: str) -> int:
    from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable

    try:
        with DaemonClient(
            socket_path, "patience", client_id=f"{PROG}-status-{os.getpid()}"
        ) as client:
            status = client.status()
            resources = client.resource_state()
    except (DaemonUnavailable, DaemonError) as exc:
        say(PROG, f"no daemon answers on {socket_path} ({exc}); start one with: {PROG}")
        return ExitStatus.FAILED
    print(f"{PROG} {status['version']} (pid {status['pid']}) on {status['socket']}")
    print(
        f"uptime {format_duration(float(status['uptime']))}, {status['resources']} resources,"  # type: ignore[arg-type]
        f" {status['clients']} clients, {status['connections']} connections,"
        f" {status['waiting']} waiting"
    )
    if status.get("backend") == "redis":
        print(f"rate limits: {_redis_state(status)}")
    for resource in resources:
        limit = resource["rate_limit"]
        if isinstance(limit, dict):
            text = (
                f"{limit['limit']} per {format_duration(float(limit['window']))}"
                f" ({limit['algorithm']}, {limit['source']}), {limit['remaining']} left,"
                f" {limit['waiting']} waiting"
            )
            text += _learned_text(limit.get("learned"))
        else:
            text = "no limit"
        clients = resource["active_clients"]
        count = len(clients) if isinstance(clients, dict) else 0
        granted = resource["tokens_granted"]
        print(f"  {resource['id']}: {text}; {count} clients, {granted} tokens granted")
    return ExitStatus.OK


def _fleet(socket_path: str) -> int:
    """The fleet's table; a view not read lately is asked for again for up to FLEET_WAIT."""
    from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable
    from patience.daemon.fleet_table import fleet_lines

    try:
        with DaemonClient(
            socket_path, "patience", client_id=f"{PROG}-status-{os.getpid()}"
        ) as client:
            deadline = time.monotonic() + FLEET_WAIT
            reply = client.request({"type": "fleet"})
            while not reply.get("fresh") and time.monotonic() < deadline:
                time.sleep(0.1)
                reply = client.request({"type": "fleet"})
    except DaemonError as exc:
        say(PROG, str(exc))
        return ExitStatus.FAILED
    except DaemonUnavailable as exc:
        say(PROG, f"no daemon answers on {socket_path} ({exc}); start one with: {PROG}")
        return ExitStatus.FAILED
    print("\n".join(fleet_lines(reply, time.time())))
    return ExitStatus.OK


def _learned_text(learned: object) -> str:
    """A learned limit beside the ones it learns under, for the status lines."""
    if not isinstance(learned, dict):
        return ""
    under = [f"{name} {learned[name]}" for name in ("configured", "declared") if learned.get(name)]
    text = f" [learned from {learned['throttles']} throttle signals"
    text += f"; {', '.join(under)}" if under else ""
    paused = learned.get("paused_until")
    if isinstance(paused, int | float):
        text += f"; paused {format_duration(max(0.0, paused - time.time()))} more"
    return text + "]"


def _redis_state(status: dict[str, object]) -> str:
    since = status.get("redis_unreachable_since")
    if not isinstance(since, int | float):
        return f"in Redis at {status['redis_url']}, shared with other daemons"
    import time

    return (
        f"local to this daemon: Redis at {status['redis_url']} unreachable since"
        f" {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))} (retrying every second)"
    )


def _stop(socket_path: str, timeout: float) -> int:
    import signal
    import time

    from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable

    try:
        with DaemonClient(
            socket_path, "patience", client_id=f"{PROG}-stop-{os.getpid()}"
        ) as client:
            pid = int(client.status()["pid"])  # type: ignore[call-overload]
    except (DaemonUnavailable, DaemonError):
        say(PROG, f"no daemon is running on {socket_path}")
        return ExitStatus.OK
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return ExitStatus.OK
    except PermissionError:
        say(PROG, f"not allowed to stop pid {pid} (it belongs to another user)")
        return ExitStatus.FAILED
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # gone once its socket is (a zombie still has a pid)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        if not os.path.lexists(socket_path):
            break
        time.sleep(0.02)
    else:
        say(PROG, f"pid {pid} did not stop within {format_duration(timeout)}")
        return ExitStatus.FAILED
    say(PROG, f"stopped pid {pid}")
    return ExitStatus.OK
