"""The adaptive strategy's memory: which delays were followed by a success, per command.

Each retry is one outcome (the delay waited, whether the next attempt succeeded). The last
`window` outcomes of a command are kept in a small JSON file under the user's state
directory ($XDG_STATE_HOME/patience, default ~/.local/state/patience), so every run of the
same command starts from what the earlier runs learned.

Suggesting the first retry's delay: outcomes are grouped in buckets of delays within a
factor of two. A bucket's score (its recent success rate) starts at its first outcome and
moves towards each later one by `learning_rate`, oldest first. The chosen bucket is the one
with the least expected wait until a success, mean delay / score; ties go to the shorter
delay (deterministic, and the cheaper choice). Its mean delay is the suggestion, except
when it is well proven (score >= 0.9) and the bucket below is untried or doing well: then
half of it, a probe, so the memory learns when a shorter wait has become enough. With
fewer than 3 outcomes, or no bucket that ever succeeded, there is no opinion.
Later retries of the same run double the delay (pacing.Adaptive). Scoring the expected
wait rather than the success rate alone matters: a flaky command that fails at random
must not drift towards long delays just because long delays also succeed.
"""

from __future__ import annotations

import os

__all__ = ["MIN_OUTCOMES", "Memory", "memory_path", "state_dir"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

MIN_OUTCOMES = 3
_PROVEN = 0.9
_PROMISING = 0.5
_FORMAT = 1


def state_dir() -> str:
    """Where patience keeps state: $XDG_STATE_HOME/patience (an absolute path), else the
    XDG default ~/.local/state/patience."""
    base = os.environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "patience")


def memory_path(command: Sequence[str]) -> str:
    """The memory file of one command line (hashed: argv may hold anything)."""
    import hashlib

    key = "\0".join(command).encode("utf-8", "surrogateescape")
    return os.path.join(state_dir(), f"adaptive-{hashlib.sha256(key).hexdigest()[:24]}.json")


def _bucket(delay: float) -> int:
    """Delays within a factor of two share a bucket; 0 has its own."""
    import math

    return math.frexp(delay)[1] if delay > 0 else -2000


class Memory:
    """Outcomes of one command, oldest first, at most `window` of them."""

    def __init__(
        self,
        command: Sequence[str],
        learning_rate: float,
        window: int,
        outcomes: Sequence[tuple[float, bool]] = (),
    ) -> None:
        self.command = list(command)
        self.learning_rate = learning_rate
        self.window = window
        self.outcomes = list(outcomes)[-window:]
        self.new: list[tuple[float, bool]] = []

    def record(self, delay: float, success: bool) -> None:
        self.outcomes.append((delay, success))
        del self.outcomes[: -self.window]
        self.new.append((delay, success))

    def suggest(self, fallback: float) -> float | None:
        """The delay before a run's first retry; None: no opinion yet (use the fallback)."""
        if len(self.outcomes) < MIN_OUTCOMES:
            return None
        buckets: dict[int, list[float]] = {}  # bucket -> [score, total delay, count]
        for delay, success in self.outcomes:
            stats = buckets.setdefault(_bucket(delay), [float(success), 0.0, 0.0])
            stats[0] += self.learning_rate * (float(success) - stats[0])
            stats[1] += delay
            stats[2] += 1
        # Expected wait until a success when each try succeeds with probability `score`:
        # delay / score. Ties go to the shorter delay.
        costs = {
            key: (total / count / score if score > 0 else float("inf"), key)
            for key, (score, total, count) in buckets.items()
        }
        key = min(costs, key=costs.__getitem__)
        if costs[key][0] == float("inf"):
            return None
        score, total, count = buckets[key]
        learned = total / count
        below = buckets.get(key - 1)
        if score >= _PROVEN and (below is None or below[0] > _PROMISING):
            return learned / 2
        return learned

    # Persistence ---------------------------------------------------------------------------

    @classmethod
    def load(
        cls, path: str, command: Sequence[str], learning_rate: float, window: int
    ) -> tuple[Memory, str | None]:
        """The memory stored at path (empty if there is none), and a warning if the file
        could not be used."""
        try:
            outcomes = _read(path, command)
        except FileNotFoundError:
            return cls(command, learning_rate, window), None
        except (OSError, ValueError) as exc:
            warning = f"ignoring unreadable memory {path} ({exc}); starting afresh"
            return cls(command, learning_rate, window), warning
        return cls(command, learning_rate, window, outcomes), None

    def save(self, path: str) -> str | None:
        """Add this run's outcomes to the file (re-read first, so concurrent runs of the same
        command both count) and replace it atomically. Returns a warning on failure."""
        if not self.new:
            return None
        import json

        try:
            outcomes = _read(path, self.command)
        except (OSError, ValueError):
            outcomes = []
        outcomes = (outcomes + self.new)[-self.window :]
        document = {
            "format": _FORMAT,
            "command": self.command,
            "outcomes": [[delay, success] for delay, success in outcomes],
        }
        temporary = f"{path}.{os.getpid()}.tmp"
        try:
            os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
            with open(temporary, "w", encoding="utf-8", errors="surrogateescape") as f:
                json.dump(document, f, separators=(",", ":"))
            os.replace(temporary, path)
        except OSError as exc:
            return f"cannot save what it learned to {path} ({exc.strerror or exc})"
        self.new.clear()
        return None


def _read(path: str, command: Sequence[str]) -> list[tuple[float, bool]]:
    """Outcomes stored for `command`; ValueError if the file is not a memory file."""
    import json

    with open(path, encoding="utf-8", errors="surrogateescape") as f:
        document = json.load(f)
    if not isinstance(document, dict) or document.get("format") != _FORMAT:
        raise ValueError("not a patience memory file")
    if document.get("command") != list(command):
        return []  # another command with the same hash prefix: do not mix them
    outcomes = []
    for item in document.get("outcomes", []):
        if (
            not isinstance(item, list)
            or len(item) != 2
            or not isinstance(item[0], int | float)
            or not isinstance(item[1], bool)
            or not 0 <= item[0] < float("inf")
        ):
            raise ValueError("malformed outcome")
        outcomes.append((float(item[0]), item[1]))
    return outcomes
