"""What rpr prints: the command's output (streamed, prefixed or held back), per-run lines,
a live status line, JSON records, and the summary. Everything of rpr's own goes to stderr,
except in the modes whose whole point is stdout (--stats-only, --json).
"""

from __future__ import annotations

import os
import sys

from patience.durations import format_duration
from patience.process import DISCARD, INHERIT, Sink, write_all
from patience.stats import Distribution
from patience.stderr import write

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.attempt import Attempt
    from patience.process import SpawnError

__all__ = [
    "JsonReporter",
    "QuietReporter",
    "Reporter",
    "StatsOnlyReporter",
    "Summary",
    "VerboseReporter",
    "err",
    "status_line_possible",
]


class Summary:
    """Totals over all runs, in memory that does not grow with the number of runs."""

    def __init__(self) -> None:
        self.runs = 0
        self.succeeded = 0
        self.failed = 0
        self.skipped = 0
        self.durations = Distribution()
        self.lateness = Distribution()
        self.exit_codes: dict[int, int] = {}

    def add(self, record: Attempt) -> None:
        self.runs += 1
        if record.success:
            self.succeeded += 1
        else:
            self.failed += 1
        self.durations.add(record.result.duration)
        self.lateness.add(record.lateness)
        status = record.result.status
        self.exit_codes[status] = self.exit_codes.get(status, 0) + 1

    def as_dict(self) -> dict[str, object]:
        d, late = self.durations, self.lateness
        return {
            "type": "summary",
            "runs": self.runs,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "success_rate": round(self.succeeded / self.runs, 6) if self.runs else None,
            "skipped_ticks": self.skipped,
            "duration": {
                "min": round(d.minimum, 6) if d.count else None,
                "p50": round(d.percentile(50), 6),
                "p95": round(d.percentile(95), 6),
                "p99": round(d.percentile(99), 6),
                "max": round(d.maximum, 6),
            },
            "lateness": {
                "p50": round(late.percentile(50), 6),
                "p99": round(late.percentile(99), 6),
            },
            "exit_codes": {str(k): v for k, v in sorted(self.exit_codes.items())},
        }

    def render(self) -> str:
        d, late = self.durations, self.lateness
        rate = f"{100.0 * self.succeeded / self.runs:.1f}%" if self.runs else "n/a"
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.exit_codes.items())) or "none"
        fmt = format_duration
        lines = [
            "rpr summary",
            f"  runs:          {self.runs} ({self.succeeded} succeeded, {self.failed} failed,"
            f" {rate} success)",
            f"  skipped ticks: {self.skipped}",
        ]
        if d.count:
            lines += [
                f"  duration:      min {fmt(d.minimum)}  p50 {fmt(d.percentile(50))}"
                f"  p95 {fmt(d.percentile(95))}  p99 {fmt(d.percentile(99))}"
                f"  max {fmt(d.maximum)}",
                f"  lateness:      p50 {fmt(late.percentile(50))}  p99 {fmt(late.percentile(99))}",
            ]
        lines.append(f"  exit codes:    {codes}")
        return "\n".join(lines) + "\n"


def err(text: str) -> None:
    """One of rpr's own lines on stderr."""
    write(text)


class Reporter:
    """Default mode: the command's output passes through untouched; summary on stderr."""

    verbose = False
    progress = False

    def __init__(self, prefix: str | None = None, summary: bool = True) -> None:
        self.prefix = prefix
        self.show_summary = summary
        self.wall_offset = 0.0
        self.total: int | None = None

    def output(self) -> str | Sink:
        """How the command's own output is handled."""
        if self.prefix is not None:
            from patience.capture import PrefixLines

            return PrefixLines(self.prefix.encode())
        return INHERIT

    def run_finished(self, record: Attempt, summary: Summary) -> None:
        if self.verbose:
            self._clear_status()
            r = record.result
            late = f", {format_duration(record.lateness)} late" if record.lateness >= 0.001 else ""
            verdict = "ok" if record.success else "failed"
            err(
                f"rpr: run {record.number} {verdict} ({record.reason}) in "
                f"{format_duration(r.duration)}{late}\n"
            )
        if self.progress:
            self._status(summary)

    def finish(self, summary: Summary) -> None:
        self._clear_status()
        if self.show_summary:
            err(summary.render())

    def cannot_start(self, error: SpawnError) -> None:
        """The command could not be started: the error alone, no summary."""
        self.error(f"{error.command}: {error.reason}")

    def error(self, text: str) -> None:
        """A problem the user must see, whatever the mode."""
        err(f"rpr: {text}\n")

    def _status(self, summary: Summary) -> None:
        of = f"/{self.total}" if self.total else ""
        err(f"\r\x1b[Krpr: run {summary.runs}{of}, {summary.succeeded} ok, {summary.failed} failed")

    def _clear_status(self) -> None:
        if self.progress:
            err("\r\x1b[K")


class VerboseReporter(Reporter):
    verbose = True


class QuietReporter(Reporter):
    """--quiet: no command output and no summary; errors still reach stderr."""

    def output(self) -> str | Sink:
        return DISCARD

    def finish(self, summary: Summary) -> None:
        self._clear_status()


class StatsOnlyReporter(QuietReporter):
    """--stats-only: nothing but the summary, on stdout."""

    def finish(self, summary: Summary) -> None:
        self._clear_status()
        sys.stdout.write(summary.render())
        sys.stdout.flush()


class JsonReporter(QuietReporter):
    """--json: one object per run on stdout, then one summary object."""

    def run_finished(self, record: Attempt, summary: Summary) -> None:
        import json

        r = record.result
        line = json.dumps(
            {
                "type": "run",
                "iteration": record.number,
                "scheduled_start": round(record.due + self.wall_offset, 6),
                "actual_start": round(r.start + self.wall_offset, 6),
                "lateness": round(record.lateness, 6),
                "duration": round(r.duration, 6),
                "exit_code": r.exit_code,
                "signal": r.signal,
                "timed_out": r.timed_out,
                "success": record.success,
                "reason": record.reason,
            }
        )
        _write_stdout(line + "\n")

    def finish(self, summary: Summary) -> None:
        import json

        _write_stdout(json.dumps(summary.as_dict()) + "\n")


def _write_stdout(text: str) -> None:
    try:
        write_all(1, text.encode())
    except BrokenPipeError:
        pass


def status_line_possible() -> bool:
    return os.isatty(2)
