"""Success and failure: patterns over the command's output, then its exit status.

Precedence (the Go tools' rule, kept): a failure-pattern match fails the run; else a
success-pattern match makes it succeed; else exit code 0 succeeds. Patterns are regular
expressions searched line by line in stdout and stderr.
"""

from __future__ import annotations

__all__ = ["PatternError", "PatternWatch", "compile_pattern", "judge"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re

    from patience.process import RunResult


class PatternError(ValueError):
    """An invalid regular expression given on the command line or in a config file."""


def compile_pattern(text: str, option: str, case_insensitive: bool = False) -> re.Pattern[str]:
    """Compile a user's regex; the error names the option and what is wrong."""
    import re

    try:
        return re.compile(text, re.IGNORECASE if case_insensitive else 0)
    except re.error as exc:
        raise PatternError(f'{option}: invalid regular expression "{text}": {exc}') from None


class PatternWatch:
    """Remembers which of the named patterns matched any line of one run's output."""

    def __init__(self, patterns: dict[str, re.Pattern[str]]) -> None:
        self.patterns = patterns
        self.matched: set[str] = set()

    def on_line(self, _stream: int, line: str) -> None:
        for name, pattern in self.patterns.items():
            if name not in self.matched and pattern.search(line):
                self.matched.add(name)

    def reset(self) -> None:
        self.matched.clear()


def judge(result: RunResult, failure_matched: bool, success_matched: bool) -> tuple[bool, str]:
    """Return (succeeded, reason) for one run."""
    if failure_matched:
        return False, "failure pattern matched"
    if success_matched:
        return True, "success pattern matched"
    if result.timed_out:
        return False, "timed out"
    if result.signal is None and result.exit_code == 0:
        return True, "exit code 0"
    return False, result.describe()
