"""The checks the modes' schedule builders share: options that do not apply to a mode, and
durations given out of order. Each refusal is a usage error naming the flags."""

from __future__ import annotations

from patience.cliparse import Parsed, UsageError
from patience.durations import format_duration

__all__ = ["in_order", "refuse_fixed_rate_options"]


def refuse_fixed_rate_options(parsed: Parsed, mode: str) -> None:
    """--every, --jitter and --on-overrun shape fixed-rate modes only; say so, not ignore."""
    for dest, flag in (("every", "--every"), ("jitter", "--jitter")):
        if parsed.values.get(dest) is not None:
            raise UsageError(f"{mode}: {flag} does not apply to {mode} (see rpr {mode} --help)")
    if parsed.values.get("on_overrun") not in (None, "skip"):
        raise UsageError(f"{mode}: --on-overrun does not apply to {mode} (see rpr {mode} --help)")


def in_order(mode: str, *bounds: tuple[str, float]) -> None:
    """Refuse durations out of order, e.g. --base-interval above --max-interval."""
    from itertools import pairwise

    for (low_flag, low), (high_flag, high) in pairwise(bounds):
        if low > high:
            raise UsageError(
                f"{mode}: {low_flag} {format_duration(low)} is above {high_flag} "
                f"{format_duration(high)}"
            )
