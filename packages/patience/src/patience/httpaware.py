"""Server retry hints in a command's output: how long the server asked us to wait.

Read from the head of what the command printed (`curl -i`, `curl -v`, an HTTP client's
error dump, a JSON body):
  headers  Retry-After (seconds, fractional seconds, or an HTTP date),
           X-RateLimit-Retry-After (seconds, or a Unix time when it looks like one),
           X-RateLimit-Reset (a Unix time; seconds when too small to be one), used only when
           X-RateLimit-Remaining is absent or 0: GitHub sends it on every response, and a
           request that failed for another reason must not wait for the window to reset;
  JSON     keys retry_after, retry_after_seconds, retryAfter, retryAfterSeconds, retry_in
           (plus any extra fields), at any depth, numbers or numeric strings, in seconds.
When several are present the most specific wins: Retry-After, X-RateLimit-Retry-After,
a JSON key, then X-RateLimit-Reset. With several responses (redirects) the last one counts.

The same reading tells whether the server throttled the command (`throttle_signal`, for the
daemon's learned limits): an HTTP status 429, or 503 with a Retry-After, in a status line
(`HTTP/1.1 429 Too Many Requests`, as `curl -i` prints it), or any of the hints above.

`re` and `json` are imported only when a hint is looked for: not on the start-up path.
"""

from __future__ import annotations

__all__ = ["JSON_KEYS", "hint_delay", "parse_hint", "throttle_signal"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

JSON_KEYS = ("retry_after", "retry_after_seconds", "retryAfter", "retryAfterSeconds", "retry_in")

# A header value at least this large is a Unix time rather than a number of seconds
# (1e9 is September 2001; no server asks for a 31-year wait).
_EPOCH_THRESHOLD = 1e9
_MAX_DEPTH = 64  # JSON nesting searched for keys; real error bodies are a few levels deep
_HEADERS = ("retry-after", "x-ratelimit-retry-after", "x-ratelimit-reset", "x-ratelimit-remaining")


def parse_hint(
    text: str,
    now: float,
    *,
    parse_headers: bool = True,
    parse_json: bool = True,
    extra_fields: Iterable[str] = (),
) -> float | None:
    """Seconds to wait according to the output `text`, or None when it holds no hint.

    `now` is the wall clock (Unix time) that HTTP dates and reset times are measured from.
    A time already past gives 0.0: the server says we may retry now.
    """
    found = _hint(text, now, parse_headers, parse_json, extra_fields)
    return None if found is None else found[1]


def throttle_signal(text: str, now: float) -> tuple[str, float | None, int | None] | None:
    """Whether the output `text` says the server throttled the command: (the signal, as the
    daemon's `feedback` message names it, the seconds the server asked for or None, the HTTP
    status or None), or None. Signals: http_429; http_503 (with a Retry-After); retry_after
    (Retry-After, X-RateLimit-Retry-After); json_hint; ratelimit_reset (X-RateLimit-Remaining
    0 with its reset)."""
    import re

    statuses = re.findall(r"^[<\s]*HTTP/\d(?:\.\d)?[ \t]+(\d{3})\b", text, re.MULTILINE)
    status = int(statuses[-1]) if statuses else None
    found = _hint(text, now)
    seconds = None if found is None else found[1]
    if status == 429:
        return ("http_429", seconds, status)
    if found is None:
        return None
    if status == 503 and found[0] == "retry_after":
        return ("http_503", seconds, status)
    return (found[0], seconds, status)


def _hint(
    text: str,
    now: float,
    parse_headers: bool = True,
    parse_json: bool = True,
    extra_fields: Iterable[str] = (),
) -> tuple[str, float] | None:
    """The most specific hint and its kind: retry_after, json_hint or ratelimit_reset."""
    headers = _headers(text) if parse_headers else {}
    value = headers.get("retry-after")
    if value is not None:
        seconds = _seconds(value)
        if seconds is None:
            seconds = _http_date(value, now)
        if seconds is not None:
            return ("retry_after", seconds)
    value = headers.get("x-ratelimit-retry-after")
    if value is not None and (seconds := _seconds_or_epoch(value, now)) is not None:
        return ("retry_after", seconds)
    if parse_json:
        keys = frozenset((*JSON_KEYS, *extra_fields))
        for found in _json_values(text, keys):
            if (seconds := _seconds(found)) is not None:
                return ("json_hint", seconds)
    value = headers.get("x-ratelimit-reset")
    remaining = headers.get("x-ratelimit-remaining", "0").strip()
    if value is not None and remaining in ("0", "0.0"):
        seconds = _seconds_or_epoch(value, now)
        return None if seconds is None else ("ratelimit_reset", seconds)
    return None


def hint_delay(
    hint: float | None, fallback: float, *, max_delay: float, min_delay: float = 0.0
) -> float:
    """The delay to use: the server's hint within [min_delay, max_delay], else the fallback."""
    if hint is None:
        return fallback
    return min(max(hint, min_delay), max_delay)


def _headers(text: str) -> dict[str, str]:
    """The last value of each header of interest, by lower-case name."""
    import re

    pattern = re.compile(
        r"^[<>*\s]*(" + "|".join(_HEADERS) + r")[ \t]*:[ \t]*([^\r\n]*)",
        re.IGNORECASE | re.MULTILINE,
    )
    return {name.lower(): value.strip() for name, value in pattern.findall(text)}


def _seconds(value: object) -> float | None:
    """A finite, non-negative number of seconds from a number or numeric text, else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    seconds = float(value)
    return seconds if 0.0 <= seconds < float("inf") else None  # also refuses NaN


def _seconds_or_epoch(value: str, now: float) -> float | None:
    seconds = _seconds(value)
    if seconds is None or seconds < _EPOCH_THRESHOLD:
        return seconds
    return max(0.0, seconds - now)


def _http_date(value: str, now: float) -> float | None:
    """Seconds from now until an HTTP date (IMF-fixdate, RFC 850 or asctime form)."""
    from email.utils import mktime_tz, parsedate_tz

    parts = parsedate_tz(value)
    if parts is None:
        return None
    try:
        when = mktime_tz(parts)
    except (OverflowError, ValueError):
        return None
    return max(0.0, when - now)


def _json_values(text: str, keys: frozenset[str]) -> Iterator[object]:
    """Values of `keys` in every JSON object embedded in text, in order; within one
    object, shallower keys first."""
    import json

    decoder = json.JSONDecoder()
    start = text.find("{")
    while start >= 0:
        try:
            document, end = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            start = text.find("{", start + 1)
            continue
        yield from _walk(document, keys, _MAX_DEPTH)
        start = text.find("{", end)


def _walk(node: object, keys: frozenset[str], depth: int) -> Iterator[object]:
    if depth <= 0:
        return
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and not isinstance(value, dict | list):
                yield value
        for value in node.values():
            if isinstance(value, dict | list):
                yield from _walk(value, keys, depth - 1)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, keys, depth - 1)
