"""`patience config show | validate [FILE] | migrate OLD [NEW]`.

`patience config ...` hands its arguments after `config` to `main`. Exit codes: 0 fine
(warnings allowed), 2 for a usage error, a bad file or a bad value.
"""

from __future__ import annotations

import sys

from patience.cliparse import Option, UsageError, parse, render_options
from patience.config import ConfigError, gather, load
from patience.exits import ExitStatus
from patience.stderr import say, write

__all__ = ["HELP", "main"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

HELP = """\
usage: patience config show [--config FILE]
       patience config validate [FILE]
       patience config migrate OLD [NEW]

show      print the effective configuration (valid TOML) and where each value came from
validate  check FILE, or every configuration file and variable in effect; exit 2 on an error
migrate   convert an old (flat, Go patience) file to the sectioned format; prints it, or
          writes NEW (which must not exist). OLD is never changed.

Files, lowest precedence first: /etc/patience/config.toml (or .yaml), then
$XDG_CONFIG_HOME/patience/config.toml, then .patience.toml or patience.toml here, then
--config FILE or $PATIENCE_CONFIG_FILE; then environment variables; then flags.
See docs/configuration.md.

options of show:
"""

_SHOW_OPTIONS = [Option("config", "--config", convert=str, metavar="FILE", help="read FILE too")]


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if not args:
        write(HELP + render_options(_SHOW_OPTIONS) + "\n")
        return ExitStatus.USAGE
    if any(a in ("-h", "--help") for a in args) or args[0] == "help":
        sys.stdout.write(HELP + render_options(_SHOW_OPTIONS) + "\n")
        return ExitStatus.OK
    command, rest = args[0], args[1:]
    try:
        if command == "show":
            return _show(rest)
        if command == "validate":
            return _validate(_positionals(rest, "validate", 0, 1))
        if command == "migrate":
            return _migrate(_positionals(rest, "migrate", 1, 2))
        raise UsageError(f'config: unknown command "{command}" (use show, validate or migrate)')
    except (UsageError, ConfigError) as exc:
        _say(str(exc))
        return ExitStatus.USAGE


def _show(args: list[str]) -> int:
    from patience.config.show import render

    parsed = parse(_SHOW_OPTIONS, args, "config show")
    if parsed.positionals or parsed.saw_separator:
        raise UsageError("config show: takes no arguments (patience config show [--config FILE])")
    config_file = parsed.values["config"]
    assert config_file is None or isinstance(config_file, str)
    config = load("patience", config_file=config_file)
    for warning in config.warnings:
        _say(f"warning: {warning}")
    sys.stdout.write(render(config))
    return ExitStatus.OK


def _validate(files: list[str]) -> int:
    from patience.config import exists, sources

    if files:
        if not exists(files[0]):
            raise ConfigError(f"{files[0]}: no such file")
        documents = [sources.read("file", files[0])]
    else:
        documents = gather("patience")
    for doc in documents:
        for warning in doc.warnings:
            _say(f"warning: {warning}")
        for error in doc.errors:
            _say(error)
    if any(doc.errors for doc in documents):
        return ExitStatus.USAGE
    if not documents:
        sys.stdout.write("no configuration files or variables found: the defaults apply\n")
    for doc in documents:
        what = doc.path or "environment (" + ", ".join(e.name for e in doc.entries.values()) + ")"
        sys.stdout.write(f"{what}: ok\n")
    return ExitStatus.OK


def _migrate(paths: list[str]) -> int:
    import os.path

    from patience.config.migrate import migrate

    old = paths[0]
    if not os.path.isfile(old):
        raise ConfigError(f"{old}: no such file")
    if len(paths) == 2 and os.path.lexists(paths[1]):
        raise ConfigError(f"{paths[1]}: already exists (choose another path or remove it)")
    text, warnings = migrate(old)
    for warning in warnings:
        _say(f"warning: {warning}")
    if len(paths) == 1:
        sys.stdout.write(text)
        return ExitStatus.OK
    try:
        with open(paths[1], "x", encoding="utf-8") as f:
            f.write(text)
    except OSError as exc:
        raise ConfigError(f"{paths[1]}: cannot write ({exc.strerror})") from None
    _say(f"wrote {paths[1]} ({old} is unchanged)")
    return ExitStatus.OK


def _positionals(args: list[str], command: str, low: int, high: int) -> list[str]:
    usage = {"validate": "validate [FILE]", "migrate": "migrate OLD [NEW]"}[command]
    parsed = parse([], args, f"config {command}")
    if not low <= len(parsed.positionals) <= high or parsed.saw_separator:
        raise UsageError(f"config {command}: expected patience config {usage}")
    return parsed.positionals


def _say(message: str) -> None:
    say("patience", message)
