"""A small declarative option parser shared by `rpr`, `patience` and `patience-daemon`.

Why not argparse: it pulls in `re`, `gettext` and more (~9 ms here), and `rpr` spawns
`patience` once per run. This parser knows exactly the grammar the tools use:
`TOOL SUBCOMMAND [options] -- COMMAND [ARGS]`, with `--long VALUE`, `--long=VALUE`,
`-s VALUE`, `-sVALUE`, multi-letter single-dash names kept from the Go tools (`-bd`),
`--flag`, `--no-flag`, `--flag=false`. Every error is one line naming the fix.
"""

from __future__ import annotations

from patience.numbers import boolean, decimal, whole

__all__ = [
    "Option",
    "Parsed",
    "UsageError",
    "asks_help",
    "load_config",
    "offsets",
    "param_option",
    "parse",
    "parse_choice",
    "parse_float",
    "parse_global",
    "parse_int",
    "plain_strategy",
    "render_options",
    "require_command",
    "unknown_choice",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import TypeVar

    from patience.config import Config
    from patience.settings import Param

    T = TypeVar("T")


class UsageError(Exception):
    """Bad command line; the message is one line that names the problem and the fix."""


class Option:
    """One option. `convert` is None for a boolean flag, else it turns the text into a value
    (raising ValueError with a message that says what is expected)."""

    __slots__ = ("convert", "default", "dest", "help", "metavar", "names", "negatable")

    def __init__(
        self,
        dest: str,
        *names: str,
        convert: Callable[[str], object] | None = None,
        default: object = None,
        help: str = "",
        metavar: str = "",
        negatable: bool = False,
    ) -> None:
        self.dest = dest
        self.names = names
        self.convert = convert
        self.default = default
        self.help = help
        self.metavar = metavar or ("" if convert is None else "VALUE")
        self.negatable = negatable

    @property
    def long(self) -> str:
        return next((n for n in self.names if n.startswith("--")), self.names[0])


class Parsed:
    """The result: option values by dest, which dests the user set, and the command.

    The typed readers (`flag`, `text`, `number`, `whole` and their `maybe_` forms, `value`)
    give an option's value as its converter made it, or its default: the command lines
    build their settings with them, never casting."""

    def __init__(self, values: dict[str, object]) -> None:
        self.values = values
        self.explicit: set[str] = set()
        self.command: list[str] = []
        self.positionals: list[str] = []
        self.saw_separator = False

    def __getitem__(self, dest: str) -> object:
        return self.values[dest]

    def flag(self, dest: str) -> bool:
        return bool(self.values[dest])

    def text(self, dest: str) -> str | None:
        value = self.values[dest]
        assert value is None or isinstance(value, str), dest
        return value

    def maybe_number(self, dest: str) -> float | None:
        value = self.values[dest]
        if value is None:
            return None
        assert isinstance(value, (int, float)) and not isinstance(value, bool), dest
        return float(value)

    def number(self, dest: str) -> float:
        value = self.maybe_number(dest)
        assert value is not None, dest
        return value

    def maybe_whole(self, dest: str) -> int | None:
        value = self.values[dest]
        assert value is None or (isinstance(value, int) and not isinstance(value, bool)), dest
        return value

    def whole(self, dest: str) -> int:
        value = self.maybe_whole(dest)
        assert value is not None, dest
        return value

    def value(self, dest: str, kind: type[T]) -> T | None:
        """The value when it is a `kind` (a Limit, a list of offsets), else None (unset)."""
        value = self.values[dest]
        return value if isinstance(value, kind) else None


def parse(options: Sequence[Option], args: Sequence[str], context: str) -> Parsed:
    """Parse `args` (after the subcommand). `context` names the subcommand in errors."""
    by_name: dict[str, Option] = {}
    for option in options:
        for name in option.names:
            by_name[name] = option
        if option.negatable:
            by_name["--no-" + option.long[2:]] = option
    parsed = Parsed({o.dest: o.default for o in options})
    i = 0
    while i < len(args):
        arg = args[i]
        i += 1
        if arg == "--":
            parsed.saw_separator = True
            parsed.command = list(args[i:])
            break
        if not arg.startswith("-") or arg == "-":
            parsed.positionals.append(arg)
            continue
        name, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        opt = by_name.get(name)
        if opt is None and not arg.startswith("--") and len(arg) > 2:
            opt = by_name.get(arg[:2])
            if opt is not None and opt.convert is not None:
                name, eq, inline = arg[:2], "=", arg[2:]
            else:
                opt = None
        if opt is None:
            raise UsageError(_unknown(name, by_name, context))
        if opt.convert is None:
            value: object = not name.startswith("--no-")
            if eq:
                try:
                    value = boolean(inline) == value
                except ValueError as exc:
                    raise UsageError(f"{name}: {exc}") from None
        else:
            if eq:
                text = inline
            elif i < len(args) and args[i] != "--":
                text = args[i]
                i += 1
            else:
                raise UsageError(f"{name} needs a value ({name} {opt.metavar})")
            try:
                value = opt.convert(text)
            except ValueError as exc:
                raise UsageError(f"{opt.long}: {exc}") from None
        parsed.values[opt.dest] = value
        parsed.explicit.add(opt.dest)
    return parsed


def _unknown(name: str, by_name: dict[str, Option], context: str) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(by_name), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]}?)" if close else " (see --help)"
    return f"{context}: unknown flag {name}{hint}"


def render_options(options: Sequence[Option]) -> str:
    """The options part of a help text, one aligned line per option."""
    rows = []
    for opt in options:
        names = ", ".join(opt.names)
        if opt.negatable:
            names += f", --no-{opt.long[2:]}"
        if opt.convert is not None:
            names += f" {opt.metavar}"
        text = opt.help
        if opt.default not in (None, False, "", []) and opt.convert is not None:
            text += f" (default {_show(opt.default, opt.metavar)})"
        rows.append((names, text))
    width = min(34, max((len(n) for n, _ in rows), default=0))
    lines = []
    for names, text in rows:
        if len(names) > width:
            lines.append(f"  {names}\n  {'':{width}}  {text}")
        else:
            lines.append(f"  {names:{width}}  {text}")
    return "\n".join(lines)


def _show(value: object, metavar: str) -> str:
    """Durations (metavar DUR) in their short form, percentages (PCT) as whole numbers when
    they are; other values as they are."""
    if isinstance(value, float) and metavar == "DUR":
        from patience.durations import format_duration

        return format_duration(value)
    if isinstance(value, float) and metavar == "PCT":
        return f"{value:g}"
    return str(value)


def parse_int(low: int | None = None, high: int | None = None) -> Callable[[str], int]:
    """A converter for a whole number within [low, high]."""

    def convert(text: str) -> int:
        value = whole(text)
        if low is not None and value < low:
            raise ValueError(f"{value} is too small (at least {low})")
        if high is not None and value > high:
            raise ValueError(f"{value} is too large (at most {high})")
        return value

    return convert


def parse_float(low: float | None = None, high: float | None = None) -> Callable[[str], float]:
    """A converter for a number within [low, high]."""

    def convert(text: str) -> float:
        value = decimal(text)
        if low is not None and value < low:
            raise ValueError(f"{text} is too small (at least {low})")
        if high is not None and value > high:
            raise ValueError(f"{text} is too large (at most {high})")
        return value

    return convert


_METAVARS = {"duration": "DUR", "number": "X", "whole": "N", "strategy": "NAME", "offsets": "LIST"}


def param_option(param: Param, *short: str, required: bool = False) -> Option:
    """The option of a strategy parameter declared in patience.backoff: its flag, help,
    default and bounds as declared there, so every tool reads and refuses it alike.
    `short` are the tool's own short names; `required`: no default, the user must give it."""
    bounds = param.bounds()
    return Option(
        param.name,
        param.flag,
        *short,
        convert=_param_converter(param),
        default=None if required else param.default,
        metavar=_METAVARS[param.kind],
        help=param.help if bounds == "any" else f"{param.help} ({bounds})",
    )


def _param_converter(param: Param) -> Callable[[str], object]:
    def duration(text: str) -> float:
        from patience.durations import parse_duration

        value = parse_duration(text)
        param.check(value, text)
        return value

    def number(text: str) -> float:
        value = decimal(text)
        param.check(value, text)
        return value

    def whole_number(text: str) -> int:
        value = whole(text)
        param.check(value, text)
        return value

    converters: dict[str, Callable[[str], object]] = {
        "duration": duration,
        "number": number,
        "whole": whole_number,
        "strategy": plain_strategy,
        "offsets": offsets,
    }
    return converters[param.kind]


def plain_strategy(text: str) -> str:
    """A plain backoff (not one that wraps another), by name or alias."""
    from patience.backoff import PLAIN, STRATEGY_NAMES

    canonical = STRATEGY_NAMES.get(text)
    if canonical not in PLAIN:
        raise ValueError(f'"{text}" is not a backoff strategy (one of {", ".join(PLAIN)})')
    return str(canonical)


def offsets(text: str) -> list[float]:
    """Planned attempts as durations from the start, in order, e.g. "0,10m,30m"."""
    from patience.backoff import MAX_OFFSETS
    from patience.durations import offset_list

    values = offset_list(text)
    if len(values) > MAX_OFFSETS:
        raise ValueError(f"{len(values)} offsets are more than the {MAX_OFFSETS} attempts allowed")
    return values


def parse_choice(*choices: str) -> Callable[[str], str]:
    def convert(text: str) -> str:
        if text not in choices:
            raise ValueError(f'"{text}" is not one of {", ".join(choices)}')
        return text

    return convert


def parse_global(
    args: list[str],
    *,
    prog: str,
    version: str,
    help_text: Callable[[], str],
    word: str,
    check_config: Callable[[str], str] | None = None,
) -> tuple[bool, str | None]:
    """Consume the options that come before the subcommand (`-h`, `-v`, `--config FILE`) from
    `args`. Returns (done, config_file): `done` when help or the version was printed."""
    import sys

    config_file: str | None = None
    while args and args[0].startswith("-") and args[0] != "--":
        head = args.pop(0)
        if head in ("-h", "--help"):
            sys.stdout.write(help_text())
            return True, None
        if head in ("-v", "--version"):
            sys.stdout.write(f"{prog} {version}\n")
            return True, None
        if head == "--config" or head.startswith("--config="):
            text = head.partition("=")[2] or (args.pop(0) if args else "")
            if not text:
                raise UsageError("--config needs a file (--config FILE)")
            try:
                config_file = check_config(text) if check_config else text
            except ValueError as exc:
                raise UsageError(f"--config: {exc}") from None
            continue
        raise UsageError(f"unknown option {head} (options go after the {word}; see {prog} --help)")
    return False, config_file


def unknown_choice(word: str, name: str, names: Sequence[str], prog: str) -> UsageError:
    """`unknown subcommand "intervl" (did you mean interval?)`."""
    import difflib

    close = difflib.get_close_matches(name, list(names), n=1)
    hint = f"did you mean {close[0]}?" if close else f"see {prog} --help"
    return UsageError(f'unknown {word} "{name}" ({hint})')


def asks_help(args: Sequence[str]) -> bool:
    """-h/--help among the options (before `--`; after it, they belong to the command)."""
    options = args[: args.index("--")] if "--" in args else args
    return any(a in ("-h", "--help") for a in options)


def require_command(parsed: Parsed, context: str, example: str) -> None:
    """The command must follow `--`, with nothing else before it. `example` shows the fix."""
    if not parsed.saw_separator:
        where = f" (found {parsed.positionals[0]!r})" if parsed.positionals else ""
        raise UsageError(f"{context}: put -- before the command{where}, e.g. {example}")
    if parsed.positionals:
        raise UsageError(f"{context}: unexpected argument {parsed.positionals[0]!r} before --")
    if not parsed.command:
        raise UsageError(f"{context}: no command after -- (e.g. {example})")


def load_config(tool: str, config_file: str | None) -> Config:
    """The shared configuration for a tool's command line: its warnings printed as
    `TOOL: warning: ...`, a bad value turned into a usage error naming file and key."""
    from patience.config import ConfigError, load
    from patience.stderr import say

    try:
        config = load(tool, config_file=config_file)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    for warning in config.warnings:
        say(tool, f"warning: {warning}")
    return config
