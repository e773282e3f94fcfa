"""`patience alerts [--all] [--json]` and `rpr alerts` (the same code): the daemon's alerts
from its `alerts` query, as a table or JSON lines (rule, resource, status, starts_at, ends_at,
tools, clients, summary). A notifier that is failing is said on stderr.

Exit codes: 0 (also with no alerts), 1 when no daemon answers, 2 for a bad command line.
"""

from __future__ import annotations

import os
import sys
from typing import TextIO

from patience.cliparse import Option, UsageError, parse
from patience.cliparse import render_options as _render
from patience.exits import ExitStatus
from patience.stderr import say

__all__ = ["main"]

OPTIONS = [
    Option("all", "--all", "-a", help="the resolved alerts the daemon remembers too"),
    Option("json", "--json", help="one JSON object per line instead of a table"),
    Option("socket", "--socket", "--daemon-socket", convert=str, metavar="PATH",
           help="the daemon's socket (default: as for --daemon)"),
]  # fmt: skip


def usage(prog: str) -> str:
    return (
        f"usage: {prog} alerts [--all] [--json] [--socket PATH]\n\n"
        "The alerts patience-daemon raised (pending and firing; --all: resolved ones too):\n"
        "limits exhausted, throttling, degraded runs, missed rpr schedules, coordination\n"
        "degraded. See docs/alerting.md.\n\n"
        f"Options:\n{_render(OPTIONS)}\n\n"
        "Exit 0 (also with no alerts), 1 when no daemon answers, 2 for a bad command line.\n"
    )


def main(args: list[str], prog: str, config_file: str | None = None) -> int:
    """`args` follow the word `alerts`; `prog` is "patience" or "rpr"."""
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(usage(prog))
        return ExitStatus.OK
    try:
        parsed = parse(OPTIONS, args, "alerts")
        if parsed.positionals or parsed.saw_separator:
            extra = parsed.positionals[0] if parsed.positionals else "--"
            raise UsageError(f"unexpected argument {extra!r} (see {prog} alerts --help)")
        socket_path = _socket(parsed.values["socket"], prog, config_file)
    except UsageError as exc:
        say(f"{prog} alerts", str(exc))
        return ExitStatus.USAGE
    return _show(socket_path, prog, bool(parsed.values["all"]), bool(parsed.values["json"]))


def _socket(explicit: object, prog: str, config_file: str | None) -> str:
    from patience.cliparse import load_config
    from patience.daemon import paths

    if isinstance(explicit, str):
        if not explicit.strip():
            raise UsageError("--socket: must not be empty")
        return paths.resolve_socket(explicit)
    section = "repeater" if prog == "rpr" else "patience"
    return paths.resolve_socket(load_config(prog, config_file).text(f"{section}.daemon_socket"))


def _show(socket_path: str, prog: str, everything: bool, as_json: bool) -> int:
    from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable

    tool = "repeater" if prog == "rpr" else "patience"
    try:
        with DaemonClient(socket_path, tool, client_id=f"{prog}-alerts-{os.getpid()}") as client:
            reply = client.request({"type": "alerts", "all": everything})
    except DaemonUnavailable as exc:
        say(
            f"{prog} alerts",
            f"no daemon answers on {socket_path} ({exc}); start one with"
            " patience-daemon, or name its socket with --socket PATH",
        )
        return ExitStatus.FAILED
    except DaemonError as exc:
        say(f"{prog} alerts", f"the daemon on {socket_path} refused: {exc}")
        return ExitStatus.FAILED
    alerts, notifiers = reply.get("alerts"), reply.get("notifiers")
    assert isinstance(alerts, list) and isinstance(notifiers, list)
    _write(alerts, as_json, sys.stdout)
    if not alerts:
        say(f"{prog} alerts", f"no {'' if everything else 'pending or firing '}alerts")
    for stats in notifiers:
        if stats.get("failures") or stats.get("dropped"):
            say(
                f"{prog} alerts",
                f"notifier {stats['notifier']}: {stats['failures']} failed tries,"
                f" {stats['dropped']} notifications dropped, {stats['queued']} queued;"
                f" last error: {stats['last_error']}",
            )
    return ExitStatus.OK


def _write(alerts: list[dict[str, object]], as_json: bool, out: TextIO) -> None:
    from patience.metricsview.render import Column, json_lines, table, when

    if as_json:
        json_lines(alerts, out)
        return
    if not alerts:
        return
    rows = [dict(a, tools=_names(a["tools"]), clients=_names(a["clients"])) for a in alerts]
    columns = [
        Column("STATUS", "status", left=True),
        Column("RULE", "rule", left=True),
        Column("RESOURCE", "resource", left=True),
        Column("SINCE", "starts_at", when, left=True),
        Column("ENDED", "ends_at", when, left=True),
        Column("TOOLS", "tools", left=True),
        Column("CLIENTS", "clients", left=True),
        Column("SUMMARY", "summary", left=True),
    ]
    table(rows, columns, out, out.isatty() and not os.environ.get("NO_COLOR"))


def _names(value: object) -> str:
    return ",".join(str(v) for v in value) if isinstance(value, list) and value else "-"
