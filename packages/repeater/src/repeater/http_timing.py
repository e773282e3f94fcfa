"""--http-aware on any mode: a server's retry hint in a run's output delays the next run.

The hint (Retry-After, X-RateLimit-*, a JSON retry field) is read by `patience.httpaware`
from the first 10 KiB of each stream of the run's output. The next run starts no earlier
than the hint, clamped to [--http-min-delay, --http-max-delay], after the run ended; a
later due time of the mode itself is kept. A hint never brings a run forward. As in the Go
tool, a hint in a 4xx response other than 429 and 403 is a client error and is ignored
unless --http-trust-client is given.
"""

from __future__ import annotations

from patience.capture import Head
from repeater.schedules import Wrapped

__all__ = ["RATE_LIMIT_STATUSES", "HintReader", "HttpAware"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from repeater.schedules import Outcome, Schedule

RATE_LIMIT_STATUSES = (429, 403)


class HintReader:
    """Keeps the head of each run's output and reads the server's hint from it."""

    def __init__(
        self,
        wall: Callable[[], float],
        parse_headers: bool = True,
        parse_json: bool = True,
        extra_fields: Sequence[str] = (),
        trust_client: bool = False,
    ) -> None:
        self.wall = wall
        self.parse_headers = parse_headers
        self.parse_json = parse_json
        self.extra_fields = tuple(extra_fields)
        self.trust_client = trust_client
        self.head = Head()

    def sink(self) -> Head:
        """A fresh sink for the run about to start."""
        self.head = Head()
        return self.head

    def hint(self) -> float | None:
        """Seconds the server asked us to wait, per the last run's output, or None."""
        text = self.head.text()
        if not self.trust_client and _client_error(text):
            return None
        from patience.httpaware import parse_hint

        return parse_hint(
            text,
            self.wall(),
            parse_headers=self.parse_headers,
            parse_json=self.parse_json,
            extra_fields=self.extra_fields,
        )


def _client_error(text: str) -> bool:
    """Whether the last HTTP status line in `text` is a 4xx other than a rate limit."""
    import re

    statuses = re.findall(r"^[<>*\s]*HTTP/[\d.]+\s+(\d{3})\b", text, re.MULTILINE)
    if not statuses:
        return False
    status = int(statuses[-1])
    return 400 <= status < 500 and status not in RATE_LIMIT_STATUSES


class HttpAware(Wrapped):
    """Delays `inner`'s next run to honour the hint the runner put in the outcome. It needs
    each run's outcome, so runs never overlap."""

    def __init__(self, inner: Schedule, min_delay: float, max_delay: float) -> None:
        super().__init__(inner)
        self.sequential = True
        self.min_delay = min_delay
        self.max_delay = max_delay

    def next(self, now: float, outcome: Outcome | None) -> float | None:
        due = super().next(now, outcome)
        if due is None or outcome is None or outcome.hint is None:
            return due
        from patience.httpaware import hint_delay

        wait = hint_delay(outcome.hint, 0.0, max_delay=self.max_delay, min_delay=self.min_delay)
        return max(due, now + wait)
