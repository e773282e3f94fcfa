"""`DaemonSettings`: how one tool's starts coordinate through patience-daemon, as both
command lines build them (patience.daemon_options.daemon_settings) and patience.coordination
takes them; `DaemonSchedule`, the schedule a tool tells the daemon. Imported only with
`--daemon`.
"""

from __future__ import annotations

from patience.settings import FAIL_MODES

__all__ = ["DaemonSchedule", "DaemonSettings"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from patience.settings import Limit


class DaemonSchedule:
    """The schedule a tool tells patience-daemon (register_schedule, docs/protocol.md): shown
    in its resource state, and what the missed-schedule alert follows. `kind` is interval,
    count, duration or cron; a cron schedule's `interval` is its longest gap."""

    __slots__ = ("count", "duration", "interval", "kind")

    def __init__(
        self,
        kind: str,
        *,
        interval: float | None = None,
        count: int | None = None,
        duration: float | None = None,
    ) -> None:
        if kind not in ("interval", "count", "duration", "cron"):
            raise ValueError(f'schedule "{kind}" is none of interval, count, duration, cron')
        self.kind = kind
        self.interval = interval
        self.count = count
        self.duration = duration

    def message(self) -> dict[str, object]:
        """As register_schedule carries it."""
        fields = {"interval": self.interval, "count": self.count, "duration": self.duration}
        shown = {key: value for key, value in fields.items() if value is not None}
        return {"type": self.kind, **shown, "coordination": True}


class DaemonSettings:
    """How one tool's starts coordinate through patience-daemon (`--daemon` and the daemon
    options over the configuration), as patience.coordination takes them.

    `tool` is the client's name on the wire (repeater, patience), `prog` the name its lines
    on stderr start with, `starts` what it calls a start (runs, attempts). `limit` is the
    tool's own limit, declared to the daemon and kept here too, unless `paced` (the tool
    keeps to it by itself, as diophantine does); without one, the tool adopts the limit the
    daemon reports. `coordinated`: each start takes a token from the daemon; `metrics`: each
    start is reported to it. `sources` says where each setting came from. Throttle signals
    in a start's output or exit are reported to the daemon (docs/adaptive-limits.md), with
    the user's own `throttle_pattern` (a regular expression) and `throttle_exit` (a status);
    `show_waits`: say on stderr how long the daemon expects a wait to be."""

    __slots__ = (
        "auto_start",
        "coordinated",
        "fail_mode",
        "labels",
        "limit",
        "log_level",
        "metrics",
        "paced",
        "prog",
        "resource_id",
        "schedule",
        "show_waits",
        "socket_path",
        "sources",
        "starts",
        "throttle_exit",
        "throttle_pattern",
        "timeout",
        "tool",
    )

    def __init__(
        self,
        *,
        tool: str,
        prog: str,
        socket_path: str,
        resource_id: str,
        starts: str = "runs",
        timeout: float = 5.0,
        auto_start: bool = True,
        fail_mode: str = "share",
        coordinated: bool = True,
        metrics: bool = True,
        log_level: str | None = None,
        limit: Limit | None = None,
        paced: bool = False,
        labels: Mapping[str, str] | None = None,
        schedule: DaemonSchedule | None = None,
        sources: Mapping[str, str] | None = None,
        throttle_pattern: str | None = None,
        throttle_exit: int | None = None,
        show_waits: bool = False,
    ) -> None:
        if tool not in ("repeater", "patience"):
            raise ValueError(f'tool "{tool}" is neither repeater nor patience')
        if fail_mode not in FAIL_MODES:
            raise ValueError(f'fail mode "{fail_mode}" is none of {", ".join(FAIL_MODES)}')
        if not 0 < timeout < float("inf"):
            raise ValueError(f"daemon timeout {timeout!r} is not a positive duration (try 5s)")
        self.tool, self.prog, self.starts = tool, prog, starts
        self.socket_path = socket_path
        self.resource_id = resource_id
        self.timeout = float(timeout)
        self.auto_start = auto_start
        self.fail_mode = fail_mode
        self.coordinated = coordinated
        self.metrics = metrics
        self.log_level = log_level
        self.limit = limit
        self.paced = paced
        self.labels = dict(labels or {})
        self.schedule = schedule
        self.sources = dict(sources or {})
        if throttle_exit is not None and not 1 <= throttle_exit <= 255:
            raise ValueError(f"throttle exit status {throttle_exit} is not from 1 to 255")
        self.throttle_pattern = throttle_pattern
        self.throttle_exit = throttle_exit
        self.show_waits = show_waits
