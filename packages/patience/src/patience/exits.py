"""The exit statuses of `rpr`, `patience`, `patience-daemon` and their subcommands.

The conventions of the shell (README.md, "Exit codes"): 0 success, 1 failure, 2 a bad
command line or configuration, 124 timed out (as timeout(1)), 126/127 the command cannot be
run / was not found, 128+N killed by signal N (130 Ctrl-C). Plain int constants rather than
an IntEnum: importing `enum` costs about 5 ms, more than a third of a tool's start-up.
"""

from __future__ import annotations

__all__ = ["ExitStatus"]


class ExitStatus:
    """Every exit status the tools return; `killed_by(N)` for a signal's."""

    OK = 0
    FAILED = 1  # a run failed (rpr); the daemon is not running or refused (daemon commands)
    USAGE = 2  # a bad flag or configuration value: one line on stderr names it
    TIMED_OUT = 124  # the last attempt outlived --timeout
    CANNOT_EXECUTE = 126  # the command exists but cannot be run
    NOT_FOUND = 127  # no such command
    SIGNALLED = 128  # plus the signal's number
    INTERRUPTED = 130  # Ctrl-C (SIGINT), 128 + 2

    @staticmethod
    def killed_by(signal: int) -> int:
        """The status of a process ended by `signal` (the shell's 128 + N)."""
        return ExitStatus.SIGNALLED + signal
