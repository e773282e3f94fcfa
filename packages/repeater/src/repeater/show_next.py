"""--show-next: say on stderr when the next run is due, each time that is decided."""

from __future__ import annotations

from repeater.schedules import Wrapped

__all__ = ["ShowNext", "local_time"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from repeater.schedules import Outcome, Schedule


def local_time(instant: float) -> str:
    """A wall-clock instant as local date and time, to the millisecond."""
    from datetime import datetime

    return datetime.fromtimestamp(instant).isoformat(sep=" ", timespec="milliseconds")


class ShowNext(Wrapped):
    """Reports each due time of `inner` through `write`, as a delay and a wall-clock time.

    `wall` reads the wall clock; `describe` formats a wall-clock instant (cron passes one
    that shows its time zone).
    """

    def __init__(
        self,
        inner: Schedule,
        write: Callable[[str], None],
        wall: Callable[[], float],
        describe: Callable[[float], str] = local_time,
    ) -> None:
        super().__init__(inner)
        self.write = write
        self.wall = wall
        self.describe = describe

    def first(self, now: float) -> float:
        return self._show(now, super().first(now))

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        due = super().next(now, outcome)
        if due is None:
            self.write("rpr: no next run: the schedule is complete\n")
            return None
        return self._show(now, due)

    def _show(self, now: float, due: float) -> float:
        from patience.durations import format_duration

        delay = max(0.0, due - now)
        when = self.describe(self.wall() + delay)
        self.write(f"rpr: next run in {format_duration(delay)} (at {when})\n")
        return due
