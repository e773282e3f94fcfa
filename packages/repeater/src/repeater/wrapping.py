"""The wrappers any `rpr` mode's schedule may get: --http-aware (its options in
repeater.options), which honours a server's retry hint, and --show-next, which says when
the next run is due. Imported only when one of them is asked for.
"""

from __future__ import annotations

from patience.cliparse import Parsed, UsageError
from repeater.mode_checks import in_order
from repeater.options import HTTP_OPTIONS

__all__ = ["wrap_schedule"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.http_timing import HintReader
    from repeater.schedules import Schedule


def wrap_schedule(
    schedule: Schedule, parsed: Parsed, mode: str
) -> tuple[Schedule, HintReader | None]:
    """Add --http-aware and --show-next around a mode's schedule; return the schedule and
    what reads the hints from each run's output (None without --http-aware)."""
    import time

    describe = _describe(schedule) if parsed.flag("show_next") else None
    hints = None
    if parsed.flag("http_aware"):
        from repeater.http_timing import HintReader, HttpAware

        lo, hi = parsed.number("http_min_delay"), parsed.number("http_max_delay")
        in_order(mode, ("--http-min-delay", lo), ("--http-max-delay", hi))
        hints = HintReader(
            time.time,
            parse_headers=_switch(parsed, "headers", mode),
            parse_json=_switch(parsed, "json", mode),
            extra_fields=parsed.value("http_custom_fields", list) or [],
            trust_client=parsed.flag("http_trust_client"),
        )
        schedule = HttpAware(schedule, lo, hi)
    else:
        given = [o.long for o in HTTP_OPTIONS if o.dest in parsed.explicit]
        if given:
            raise UsageError(f"{mode}: {given[0]} needs --http-aware")
    if describe is not None:
        from repeater.output import err
        from repeater.show_next import ShowNext

        schedule = ShowNext(schedule, err, time.time, describe)
    return schedule, hints


def _describe(schedule: Schedule) -> Callable[[float], str]:
    """How --show-next writes a time: in the cron time zone for cron, else local."""
    from repeater.cron import Cron
    from repeater.show_next import local_time

    return schedule.times.describe if isinstance(schedule, Cron) else local_time


def _switch(parsed: Parsed, what: str, mode: str) -> bool:
    """--http-parse-X (default on; also --no-http-parse-X) against --http-no-parse-X."""
    on, off = f"http_parse_{what}", f"http_no_parse_{what}"
    if not parsed.flag(off):
        return parsed.flag(on)
    if on in parsed.explicit and parsed.flag(on):
        raise UsageError(
            f"{mode}: --http-parse-{what} and --http-no-parse-{what} contradict each other"
        )
    return False
