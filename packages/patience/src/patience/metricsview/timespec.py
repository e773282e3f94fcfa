"""`--since` and `--until`: a duration back from now (`1h`, `30m`, `7d`) or a time
(`2026-12-01T10:00`, `2026-12-01 10:00:00+01:00`, `2026-12-01`; local time unless it names
its zone; `@1764583200` for Unix seconds)."""

from __future__ import annotations

__all__ = ["moment"]


def moment(text: str, now: float) -> float:
    """Unix seconds for `text`, read as a duration before `now` or as a time; ValueError
    names the forms accepted."""
    from datetime import datetime

    from patience.durations import DurationError, parse_duration

    text = text.strip()
    if text.startswith("@"):
        try:
            return _unix(float(text[1:]))
        except ValueError:
            pass
    else:
        try:
            return now - parse_duration(text)
        except DurationError:
            pass
        try:
            return _unix(datetime.fromisoformat(text).timestamp())
        except (ValueError, OverflowError, OSError):
            pass
    raise ValueError(
        f'"{text}" is neither a duration (1h, 30m, 7d) nor a time'
        " (2026-12-01T10:00, 2026-12-01 10:00:00+01:00, @1764583200)"
    )


def _unix(seconds: float) -> float:
    if not 0 <= seconds <= 1 << 40:
        raise ValueError("out of range")
    return seconds
