"""The bases of the daemon's messages and the types several of them share (docs/protocol.md).

Apart from daemon/protocol.py so that groups of messages (daemon/query_messages.py) can live in
modules of their own, which protocol.py gathers into the one tagged union it decodes.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

__all__ = ["Request", "ResourceId", "Response", "StrictRequest", "Tool"]

ResourceId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
Tool = Literal["patience", "repeater"]


class Request(msgspec.Struct, tag_field="type"):
    """Base of every tagged request."""

    def problem(self) -> str | None:
        """What breaks a bound the types cannot say (docs/protocol.md, "Bounds"), or None."""
        return None


class StrictRequest(Request, forbid_unknown_fields=True):
    """Base of the 2.0 requests: unknown fields are refused."""


class Response(msgspec.Struct, tag_field="type", omit_defaults=True):
    """Base of every reply; fields left at their default are not sent."""
