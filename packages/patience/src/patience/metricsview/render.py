"""How rows are written: an aligned table (with a little colour on a terminal), or JSON lines
with `--json`; and the formats of the numbers in a table."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple, TextIO

__all__ = [
    "Column",
    "count",
    "json_lines",
    "percent",
    "seconds",
    "table",
    "text",
    "when",
]

Row = dict[str, object]
_BOLD, _RED, _RESET = "\033[1m", "\033[31m", "\033[0m"


def count(value: object) -> str:
    return "-" if value is None else f"{value:,}"


def percent(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 100:.1f}%"


def seconds(value: object) -> str:
    """A duration as people read it: 850us, 12ms, 1.25s, 2m05s, 1h10m."""
    if not isinstance(value, int | float):
        return "-"
    if value < 0.001:
        return f"{value * 1e6:.0f}us"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 60:
        return f"{value:.2f}s"
    if value < 3600:
        return f"{int(value // 60)}m{int(value % 60):02d}s"
    return f"{int(value // 3600)}h{int(value % 3600 // 60):02d}m"


def when(value: object) -> str:
    """A Unix time in local time, to the second."""
    if not isinstance(value, int | float):
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))


def text(value: object) -> str:
    return "-" if value is None else str(value)


class Column(NamedTuple):
    title: str
    key: str
    format: Callable[[object], str] = text
    left: bool = False  # text columns are aligned left, numbers right
    alarm: bool = False  # shown in red on a terminal when it is not zero


def table(
    rows: Sequence[Row], columns: Sequence[Column], out: TextIO, color: bool, header: bool = True
) -> None:
    """Rows under a header (unless `header` is false: more rows of a table already begun),
    columns aligned; `color` adds a bold header and red alarms."""
    cells = [[column.format(row.get(column.key)) for column in columns] for row in rows]
    widths = [
        max(len(column.title), *(len(line[i]) for line in cells))
        for i, column in enumerate(columns)
    ]
    if header:
        titles = "  ".join(_pad(c.title, w, c.left) for c, w in zip(columns, widths, strict=True))
        out.write(f"{_BOLD}{titles.rstrip()}{_RESET}\n" if color else titles.rstrip() + "\n")
    for row, line in zip(rows, cells, strict=True):
        parts = []
        for column, cell, width in zip(columns, line, widths, strict=True):
            padded = _pad(cell, width, column.left)
            if color and column.alarm and row.get(column.key) not in (0, None):
                padded = f"{_RED}{padded}{_RESET}"
            parts.append(padded)
        out.write("  ".join(parts).rstrip() + "\n")


def _pad(cell: str, width: int, left: bool) -> str:
    return cell.ljust(width) if left else cell.rjust(width)


def json_lines(rows: Sequence[Row], out: TextIO) -> None:
    for row in rows:
        out.write(json.dumps(row, separators=(",", ":")) + "\n")
    out.flush()
