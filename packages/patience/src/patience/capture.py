"""Sinks for captured output: forward it byte for byte, prefix its lines, scan its lines,
keep its head. Each holds bounded memory whatever the size of the output.
"""

from __future__ import annotations

from patience.process import Sink, write_all

__all__ = ["MAX_LINE", "Forward", "Head", "LineScanner", "PrefixLines", "Tee"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

# A "line" longer than this is handed to scanners in pieces of this size.
MAX_LINE = 65536


class Forward(Sink):
    """Write the child's stdout to fd 1 and its stderr to fd 2, unchanged, in order."""

    def __init__(self) -> None:
        self.broken = False

    def feed(self, stream: int, data: bytes) -> None:
        if self.broken:
            return
        try:
            write_all(stream, data)
        except BrokenPipeError:
            # Whoever read our output went away (`rpr ... | head`): stop writing, keep running.
            self.broken = True


class PrefixLines(Sink):
    """Forward output with `prefix` at the start of every line, per stream."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.at_line_start = {1: True, 2: True}

    def feed(self, stream: int, data: bytes) -> None:
        out = bytearray()
        for piece in data.splitlines(keepends=True):
            if self.at_line_start[stream]:
                out += self.prefix
            out += piece
            self.at_line_start[stream] = piece.endswith(b"\n")
        try:
            write_all(stream, bytes(out))
        except BrokenPipeError:
            pass


class LineScanner(Sink):
    """Hand each complete line (without its newline) of both streams to `on_line`."""

    def __init__(self, on_line: Callable[[int, str], None]) -> None:
        self.on_line = on_line
        self.partial = {1: b"", 2: b""}

    def feed(self, stream: int, data: bytes) -> None:
        buf = self.partial[stream] + data
        lines = buf.split(b"\n")
        self.partial[stream] = lines.pop()
        for line in lines:
            self.on_line(stream, line.decode("utf-8", "replace"))
        while len(self.partial[stream]) > MAX_LINE:
            head, self.partial[stream] = (
                self.partial[stream][:MAX_LINE],
                self.partial[stream][MAX_LINE:],
            )
            self.on_line(stream, head.decode("utf-8", "replace"))

    def close(self) -> None:
        for stream, rest in self.partial.items():
            if rest:
                self.on_line(stream, rest.decode("utf-8", "replace"))
        self.partial = {1: b"", 2: b""}


class Head(Sink):
    """Keep the first `limit` bytes of stdout and of stderr (HTTP hints live there)."""

    def __init__(self, limit: int = 10240) -> None:
        self.limit = limit
        self.data = {1: bytearray(), 2: bytearray()}

    def feed(self, stream: int, data: bytes) -> None:
        room = self.limit - len(self.data[stream])
        if room > 0:
            self.data[stream] += data[:room]

    def text(self) -> str:
        return (bytes(self.data[1]) + b"\n" + bytes(self.data[2])).decode("utf-8", "replace")


class Tee(Sink):
    """Feed several sinks in order."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)

    def feed(self, stream: int, data: bytes) -> None:
        for sink in self.sinks:
            sink.feed(stream, data)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
