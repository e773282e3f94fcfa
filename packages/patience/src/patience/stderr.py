"""The one way the tools write their own lines to stderr.

Through `sys.stderr`, which Python flushes at each newline, so that a line is never held
back behind the command's output and tests can capture it in-process; a closed or broken
stderr is ignored, since a tool must not fail because nobody reads its messages.
"""

from __future__ import annotations

import sys

__all__ = ["say", "write"]


def write(text: str) -> None:
    """Write `text` (whole lines, newline included) to stderr, at once."""
    try:
        sys.stderr.write(text)
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # closed, or no stderr at all
        pass


def say(prog: str, text: str) -> None:
    """One line of the tool's own: `prog: text` (`rpr: warning: ...`)."""
    write(f"{prog}: {text}\n")
