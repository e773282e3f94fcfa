"""`patience metrics FORM [OPTIONS]` and `rpr metrics FORM [OPTIONS]`: the same code, called by
each tool's command line with its name.

Exit codes: 0 (also when there is no data: an empty result), 1 when no daemon answers (the
message names the socket) or the daemon refuses the query, 2 for a bad command line, 130 when
`--follow` is interrupted.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TextIO

from patience.cliparse import Option, Parsed, UsageError, parse, parse_choice, parse_int
from patience.cliparse import render_options as _render
from patience.exits import ExitStatus
from patience.metricsview.timespec import moment
from patience.metricsview.views import Filters
from patience.stderr import say, write

__all__ = ["main"]

FORMS = {
    "summary": "runs, outcomes and durations per resource",
    "tools": "rpr and patience side by side",
    "usage": "rate-limit tokens granted, requests refused and waits per resource",
    "runs": "the most recent runs (--follow: keep printing new ones)",
    "trend": "runs, success rate and p50/p95 duration per step, as a chart on a terminal",
}
TOOLS = {"patience": "patience", "rpr": "repeater", "repeater": "repeater"}
DEFAULT_SINCE = "24h"


def _glob(text: str) -> str:
    if not 1 <= len(text) <= 256:
        raise ValueError("a resource pattern is 1 to 256 characters")
    return text


def _tool(text: str) -> str:
    name = TOOLS.get(text)
    if name is None:
        raise ValueError(f'"{text}" is not a tool (patience or rpr)')
    return name


def _not_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


OPTIONS = [
    Option("resource", "--resource", "-r", convert=_glob, metavar="GLOB",
           help="resources whose id matches GLOB (*, ?, [...]; quote it from the shell)"),
    Option("tool", "--tool", "-t", convert=_tool, metavar="TOOL",
           help="only the runs of patience or rpr"),
    Option("since", "--since", convert=_not_empty, metavar="DUR|TIME",
           help="from DUR ago (1h, 7d) or from TIME (2026-12-01T10:00) (default: 24h;"
           " runs: any time)"),
    Option("until", "--until", convert=_not_empty, metavar="DUR|TIME",
           help="up to DUR ago or to TIME (default: now)"),
    Option("step", "--step", convert=parse_choice("1m", "5m", "1h", "1d"), metavar="STEP",
           help="trend: one point per STEP, 1m 5m 1h or 1d (default: chosen from the range)"),
    Option("limit", "--limit", "-n", convert=parse_int(1, 1000), default=20, metavar="N",
           help="runs: how many (1..1000)"),
    Option("follow", "--follow", "-f", help="runs: keep printing runs as they are stored"),
    Option("json", "--json", help="one JSON object per line instead of a table"),
    Option("socket", "--socket", "--daemon-socket", convert=_not_empty, metavar="PATH",
           help="the daemon's socket (default: as for --daemon)"),
]  # fmt: skip


def usage(prog: str) -> str:
    forms = "\n".join(f"  {name:8} {summary}" for name, summary in FORMS.items())
    return (
        f"usage: {prog} metrics {'|'.join(FORMS)} [OPTIONS]\n\n"
        "What patience-daemon knows of every rpr and patience run on this host.\n\n"
        f"Forms:\n{forms}\n\nOptions:\n{_render(OPTIONS)}\n\n"
        "A table on a terminal (trend: a chart; plain numbers when not a terminal or with\n"
        "NO_COLOR), JSON lines with --json. Exit 0 (also with no data), 1 when no daemon\n"
        "answers, 2 for a bad command line.\n"
    )


def main(args: list[str], prog: str, config_file: str | None = None) -> int:
    """`args` follow the word `metrics`; `prog` is "patience" or "rpr"."""
    try:
        return _main(args, prog, config_file)
    except UsageError as exc:
        say(f"{prog} metrics", str(exc))
        return ExitStatus.USAGE


def _main(args: list[str], prog: str, config_file: str | None) -> int:
    if not args:
        write(usage(prog))
        return ExitStatus.USAGE
    if args[0] in ("-h", "--help"):
        sys.stdout.write(usage(prog))
        return ExitStatus.OK
    form = args.pop(0)
    if form not in FORMS:
        from patience.cliparse import unknown_choice

        raise unknown_choice("form", form, list(FORMS), f"{prog} metrics")
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(usage(prog))
        return ExitStatus.OK
    parsed = parse(OPTIONS, args, f"metrics {form}")
    if parsed.positionals or parsed.saw_separator:
        extra = parsed.positionals[0] if parsed.positionals else "--"
        raise UsageError(f"unexpected argument {extra!r} (see {prog} metrics --help)")
    if parsed.values["follow"] and form != "runs":
        raise UsageError("--follow goes with runs only")
    filters = _filters(parsed, form)
    socket_path = _socket(parsed, prog, config_file)
    return _show(form, parsed, filters, socket_path, prog)


def _filters(parsed: Parsed, form: str) -> Filters:
    now = time.time()
    values = parsed.values
    since = values["since"] if values["since"] is not None or form == "runs" else DEFAULT_SINCE
    start = None if since is None else _moment("--since", since, now)
    end = None if values["until"] is None else _moment("--until", values["until"], now)
    if start is not None and end is not None and end <= start:
        raise UsageError("--until must be later than --since")
    return Filters(_opt(values["resource"]), _opt(values["tool"]), start, end, _opt(values["step"]))


def _moment(option: str, text: object, now: float) -> float:
    try:
        return moment(str(text), now)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _socket(parsed: Parsed, prog: str, config_file: str | None) -> str:
    from patience.cliparse import load_config
    from patience.daemon import paths

    section = "repeater" if prog == "rpr" else "patience"
    explicit = parsed.values["socket"]
    configured = None
    if explicit is None:
        configured = load_config(prog, config_file).text(f"{section}.daemon_socket")
    return paths.resolve_socket(_opt(explicit), configured)


def _show(form: str, parsed: Parsed, filters: Filters, socket_path: str, prog: str) -> int:
    from patience.daemon.client import DaemonClient, DaemonError, DaemonUnavailable
    from patience.metricsview import show

    tool = "repeater" if prog == "rpr" else "patience"
    out = sys.stdout
    try:
        with DaemonClient(socket_path, tool, timeout=5.0) as client:
            return show.FORMS[form](client, parsed, filters, out, _style(out))
    except DaemonUnavailable as exc:
        say(
            f"{prog} metrics",
            f"no daemon answers on {socket_path} ({exc}); start one with"
            " patience-daemon, or name its socket with --socket PATH",
        )
    except DaemonError as exc:
        say(f"{prog} metrics", f"the daemon on {socket_path} refused the query: {exc}")
    except KeyboardInterrupt:
        return ExitStatus.INTERRUPTED
    return ExitStatus.FAILED


def _style(out: TextIO) -> bool:
    """Tables and charts for a person: a terminal, and NO_COLOR not set."""
    return out.isatty() and not os.environ.get("NO_COLOR")
