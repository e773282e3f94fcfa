"""How busy the whole host is: load average per core, CPU use, memory use (Linux /proc).

These are the host's figures, not rpr's own: rpr's load-adaptive mode backs off when the
machine is busy, whoever makes it busy, and the daemon scales down the limits of resources
with `adapt_to_load` by the same measure (`ratio`). The file reader is injectable so tests
can hand in any /proc contents. A figure that cannot be read (no /proc, an odd format) is
None and the caller leaves it out.
"""

from __future__ import annotations

import os

__all__ = ["TARGETS", "HostLoad", "read_text"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


TARGETS = (70.0, 80.0, 1.0)  # CPU %, memory %, load per core: where "busy" begins


def read_text(path: str) -> str:
    with open(path, encoding="ascii", errors="replace") as f:
        return f.read()


class HostLoad:
    """Readings of the host's load. `cpu_used` compares /proc/stat with the previous call."""

    def __init__(self, read: Callable[[str], str] = read_text, cores: int | None = None) -> None:
        self.read = read
        self.cores = cores or os.cpu_count() or 1
        self.previous_cpu: tuple[int, int] | None = None  # (busy, total) jiffies

    def load_per_core(self) -> float | None:
        """The 1-minute load average divided by the number of cores."""
        try:
            return float(self.read("/proc/loadavg").split()[0]) / self.cores
        except (OSError, ValueError, IndexError):
            return None

    def memory_used(self) -> float | None:
        """Percent of memory in use: 100 x (1 - MemAvailable / MemTotal)."""
        try:
            fields = {}
            for line in self.read("/proc/meminfo").splitlines():
                name, _, rest = line.partition(":")
                if name in ("MemTotal", "MemAvailable"):
                    fields[name] = int(rest.split()[0])
            total, available = fields["MemTotal"], fields["MemAvailable"]
        except (OSError, ValueError, IndexError, KeyError):
            return None
        if total <= 0:
            return None
        return 100.0 * (1.0 - available / total)

    def cpu_used(self) -> float | None:
        """Percent of all cores' time spent busy since the previous call (None the first
        time: a rate needs two readings)."""
        try:
            line = self.read("/proc/stat").splitlines()[0].split()
            # user nice system idle iowait irq softirq steal (guest time is inside user)
            ticks = [int(x) for x in line[1:9]]
        except (OSError, ValueError, IndexError):
            return None
        if line[0] != "cpu" or len(ticks) < 5:
            return None
        total = sum(ticks)
        busy = total - ticks[3] - ticks[4]
        previous, self.previous_cpu = self.previous_cpu, (busy, total)
        if previous is None or total <= previous[1]:
            return None
        return 100.0 * (busy - previous[0]) / (total - previous[1])

    def readings(self) -> tuple[float | None, float | None, float | None]:
        """CPU use (%), memory use (%) and load per core, each None when unreadable."""
        return (self.cpu_used(), self.memory_used(), self.load_per_core())

    def ratio(
        self,
        targets: tuple[float, float, float] = TARGETS,
        readings: tuple[float | None, float | None, float | None] | None = None,
    ) -> float | None:
        """How far the host is from its targets: the largest of reading / target (above 1.0:
        busier than wanted), None without any reading."""
        readings = self.readings() if readings is None else readings
        ratios = [r / t for r, t in zip(readings, targets, strict=True) if r is not None]
        return max(ratios) if ratios else None
