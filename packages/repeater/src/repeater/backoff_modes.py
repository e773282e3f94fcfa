"""rpr's backoff modes (exponential, linear, fibonacci, polynomial, decorrelated-jitter):
each strategy's parameters as declared in patience.backoff, so `rpr` and `patience` read
and refuse them alike (the first one, the base delay or the increment, required as in the
Go tool), the Go tool's short flags, the rule the modes follow and their schedule
(repeater.backoff_schedules).
"""

from __future__ import annotations

from patience.backoff import DECLARATIONS
from patience.cliparse import Option, Parsed, UsageError, param_option, parse_int
from repeater.mode_checks import in_order, refuse_fixed_rate_options
from repeater.modes import ModeParts

__all__ = ["BACKOFF_RULE", "SHORT_FLAGS", "backoff_builder", "backoff_options", "parts"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.schedules import Schedule

BACKOFF_RULE = """\
After each run rpr waits before starting the next: after the n-th failed run in a
row it waits the strategy's n-th delay; after a successful run the sequence starts
again (it waits the first delay). rpr stops cleanly after --attempts runs."""

_ATTEMPTS = Option(
    "attempts",
    "--attempts",
    "-a",
    convert=parse_int(1),
    default=3,
    metavar="N",
    help="stop after N runs",
)
# The Go tool's short flags of the backoff parameters.
SHORT_FLAGS = {
    "base_delay": ("-bd",),
    "max_delay": ("-md",),
    "increment": ("-inc",),
    "exponent": ("-exp",),
}


def backoff_options(name: str) -> list[Option]:
    """A backoff mode's options: the strategy's parameters, then --attempts."""
    params = DECLARATIONS[name].params
    return [
        *(param_option(p, *SHORT_FLAGS.get(p.name, ()), required=p is params[0]) for p in params),
        _ATTEMPTS,
    ]


def backoff_builder(name: str) -> Callable[[Parsed], Schedule]:
    """The builder of the backoff mode `name`: the strategy's own options, its delays."""

    def build(parsed: Parsed) -> Schedule:
        from patience.settings import StrategySettings
        from repeater.backoff_schedules import Backoff

        refuse_fixed_rate_options(parsed, name)
        params = DECLARATIONS[name].params
        try:
            strategy = StrategySettings(name, {p.name: parsed.values[p.name] for p in params})
        except ValueError as exc:
            raise UsageError(f"{name}: {exc}") from None
        first = params[0]  # --base-delay, or --increment for linear
        in_order(
            name,
            (first.flag, strategy.number(first.name)),
            ("--max-delay", strategy.number("max_delay")),
        )
        return Backoff(
            strategy.strategy(),
            attempts=parsed.whole("attempts"),
            immediate=parsed.flag("immediate"),
        )

    return build


def parts(name: str) -> ModeParts:
    """The parts of the backoff mode `name` (repeater.modes loads them when it is used)."""
    return ModeParts(backoff_builder(name), backoff_options(name), notes=BACKOFF_RULE + "\n")
