"""rpr's subcommands (modes): each one's names, summary, the option it requires, its own
options, how it builds its schedule, its help notes, what `--show-next` does without a
command, and the schedule it tells patience-daemon. Every mode also takes the common
options (repeater.options).
"""

from __future__ import annotations

from patience.cliparse import Option, Parsed
from patience.durations import parse_duration
from repeater.options import COMMON_GROUPS
from repeater.schedules import BackToBack, FixedRate, RetryPattern, Schedule

__all__ = [
    "BACKOFF_MODES",
    "MODES",
    "BackoffMode",
    "Mode",
    "ModeParts",
    "all_options",
    "find_mode",
    "fixed_rate_or_back_to_back",
    "rate_limited",
    "required_flag",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from patience.settings.daemon import DaemonSchedule


class ModeParts:
    """What a mode does: its own options, how it builds its schedule from the parsed line,
    how it decides (for its --help), what --show-next does without a command, and the
    schedule it tells the daemon (when the daemon can describe it)."""

    __slots__ = ("announce", "build", "notes", "options", "preview")

    def __init__(
        self,
        build: Callable[[Parsed], Schedule],
        options: Sequence[Option] = (),
        *,
        notes: str = "",
        preview: Callable[[Parsed], int] | None = None,
        announce: Callable[[Parsed], DaemonSchedule] | None = None,
    ) -> None:
        self.build = build
        self.options = list(options)
        self.notes = notes
        self.preview = preview
        self.announce = announce


class Mode:
    """A subcommand: its names, summary, the option it requires, an example, and its parts,
    given here or made by `parts(name)` of the module named: the modes beyond the fixed
    ones are imported only when used, so a start pays for its own mode alone."""

    def __init__(
        self,
        name: str,
        aliases: tuple[str, ...],
        summary: str,
        required: str,
        example: str,
        parts: ModeParts | str,
    ) -> None:
        self.name = name
        self.aliases = aliases
        self.summary = summary
        self.required = required
        self.example = example
        self._parts = parts

    @property
    def parts(self) -> ModeParts:
        if isinstance(self._parts, str):
            module = __import__(self._parts, fromlist=["parts"])
            self._parts = module.parts(self.name)
        assert isinstance(self._parts, ModeParts)
        return self._parts


def fixed_rate_or_back_to_back(parsed: Parsed) -> Schedule:
    every = parsed.maybe_number("every")
    if every is None:
        return BackToBack()
    return FixedRate(
        every,
        policy=parsed.text("on_overrun") or "skip",
        immediate=parsed.flag("immediate"),
        jitter=_jitter(parsed.text("jitter"), every),
    )


def rate_limited(parsed: Parsed) -> Schedule:
    """As often as --rate allows (on --every ticks when given); --retry-pattern on failure."""
    inner = fixed_rate_or_back_to_back(parsed)
    offsets = parsed.value("retry_pattern", list)
    return RetryPattern(inner, offsets) if offsets is not None else inner


def _jitter(spec: str | None, every: float) -> Callable[[], float] | None:
    if spec is None:
        return None
    span = every * float(spec[:-1]) / 100 if spec.endswith("%") else parse_duration(spec)
    if span <= 0:
        return None
    import random

    rng = random.Random()
    return lambda: rng.random() * span


def _fixed(kind: str) -> Callable[[Parsed], DaemonSchedule]:
    """The schedule of interval, count and duration as the daemon shows it."""

    def announce(parsed: Parsed) -> DaemonSchedule:
        from patience.settings.daemon import DaemonSchedule

        return DaemonSchedule(
            kind,
            interval=parsed.maybe_number("every"),
            count=parsed.maybe_whole("times"),
            duration=parsed.maybe_number("for_"),
        )

    return announce


class BackoffMode(Mode):
    """A backoff mode as patience.backoff declares its strategy: its aliases, its delay and
    its required first parameter (--base-delay, or --increment for linear) are read from the
    declaration when first asked for, so that the other modes never load patience.backoff."""

    def __init__(self, name: str) -> None:  # the rest: __getattr__
        self.name = name
        self._parts = "repeater.backoff_modes"

    def __getattr__(self, attr: str) -> object:
        if attr not in ("aliases", "summary", "required", "example"):
            raise AttributeError(attr)
        from patience.backoff import DECLARATIONS

        declaration = DECLARATIONS[self.name]
        first = declaration.params[0]
        Mode.__init__(
            self,
            self.name,
            declaration.aliases,
            f"wait {declaration.summary} after the n-th failed run in a row",
            first.name,
            f"rpr {self.name} {first.flag} 1s --attempts 5 -- curl -fsS URL",
            self._parts,
        )
        return getattr(self, attr)


# The backoff strategies rpr runs as modes (repeater.backoff_modes).
BACKOFF_MODES = ("exponential", "linear", "fibonacci", "polynomial", "decorrelated-jitter")

MODES: list[Mode] = [
    Mode(
        "interval",
        ("int", "i"),
        "run the command every DUR",
        "every",
        "rpr interval --every 30s -- curl -fsS URL",
        ModeParts(fixed_rate_or_back_to_back, announce=_fixed("interval")),
    ),
    Mode(
        "count",
        ("cnt", "c"),
        "run the command N times (back to back without --every)",
        "times",
        "rpr count --times 10 -- ./check.sh",
        ModeParts(fixed_rate_or_back_to_back, announce=_fixed("count")),
    ),
    Mode(
        "duration",
        ("dur", "d"),
        "run the command for DUR (back to back without --every)",
        "for_",
        "rpr duration --for 1m --every 5s -- date",
        ModeParts(fixed_rate_or_back_to_back, announce=_fixed("duration")),
    ),
    Mode(
        "rate-limit",
        ("rate", "rl", "r"),
        "run the command as often as --rate allows, never more",
        "rate",
        "rpr rate-limit --rate 100/1h --times 500 -- curl -fsS URL",
        ModeParts(rate_limited),
    ),
    Mode(
        "cron",
        ("cr",),
        "run the command at the times a cron expression matches",
        "cron",
        "rpr cron --cron '*/5 * * * *' --tz Europe/London -- ./report.sh",
        "repeater.cron_mode",
    ),
    Mode(
        "adaptive",
        ("adapt", "a"),
        "run the command at an interval that backs off when runs fail or slow down",
        "base_interval",
        "rpr adaptive --base-interval 1s --show-metrics -- curl -fsS URL",
        "repeater.adaptive_modes",
    ),
    Mode(
        "load-adaptive",
        ("load", "la"),
        "run the command less often while the host is busy, more often when idle",
        "base_interval",
        "rpr load-adaptive --base-interval 10s --target-cpu 50 -- ./batch.sh",
        "repeater.adaptive_modes",
    ),
    *(BackoffMode(name) for name in BACKOFF_MODES),
]


def find_mode(name: str) -> Mode | None:
    for mode in MODES:
        if name == mode.name or name in mode.aliases:
            return mode
    return None


def all_options(mode: Mode) -> list[Option]:
    opts = list(mode.parts.options)
    seen = {o.dest for o in opts}
    for _, group in COMMON_GROUPS:
        opts += [o for o in group if o.dest not in seen]
    return opts


def required_flag(mode: Mode) -> str:
    """The flag of the option the mode requires (--every, --cron, ...)."""
    return next(o.long for o in all_options(mode) if o.dest == mode.required)
