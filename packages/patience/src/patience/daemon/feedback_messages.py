"""Protocol 2.0's `feedback` message (a tool met a throttle signal) and the learned-limit
figures every reply that shows a limit carries (docs/protocol.md, "feedback";
docs/adaptive-limits.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec

from patience.daemon.message_base import ResourceId, Response, StrictRequest

__all__ = ["SIGNALS", "Feedback", "FeedbackResponse", "LearnedState"]

# What the tool saw: an HTTP status (429; 503 with Retry-After), a Retry-After or
# X-RateLimit-Retry-After header, X-RateLimit-Remaining: 0 with its reset, a JSON retry
# hint, the user's --throttle-pattern, or the user's --throttle-exit.
SIGNALS = ("http_429", "http_503", "retry_after", "ratelimit_reset", "json_hint", "pattern", "exit")

if TYPE_CHECKING:
    Signal = str
else:
    Signal = Literal[SIGNALS]


class Feedback(StrictRequest, tag="feedback"):
    """A run or attempt met a throttle signal; `retry_after`, the seconds the server asked
    for (measured when the run ended), pauses every client of the resource that long."""

    resource_id: ResourceId
    signal: Signal
    retry_after: Annotated[float, msgspec.Meta(ge=0, le=10 * 365 * 86400)] | None = None
    status: Annotated[int, msgspec.Meta(ge=100, le=599)] | None = None


class LearnedState(msgspec.Struct):
    """A resource's learned limit beside the one it learns under: `limit`, the learned
    tokens per `window`; `configured`, the configured limit (its ceiling), or null;
    `declared`, the strictest declared one, or null; `throttles`, signals heard;
    `paused_until`, Unix seconds, while a server's pause holds every grant."""

    limit: int
    window: float
    configured: int | None
    declared: int | None
    throttles: int
    paused_until: float | None = None


class FeedbackResponse(Response, tag="feedback_response"):
    """`limit`: the resource's limit in force now (null: none); `decreased`: whether this
    signal lowered it (the first of an episode does); `learned` as in resource_state."""

    limit: int | None
    decreased: bool
    learned: LearnedState | None = None
