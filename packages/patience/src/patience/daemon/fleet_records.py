"""The fleet registry's records and the fleet view, as pure code (the clock is a parameter).

With the Redis backend each daemon writes a record of itself at every heartbeat
(patience.daemon.fleet): who it is (host, pid, version, start), its clients per tool, and the
resources it uses with the tokens it granted in their last window. Records are bounded (a
daemon describes at most MAX_RESOURCES resources, the most granted; fields have maximum
lengths; an encoded record over MAX_RECORD_BYTES is not read), so that reading the fleet costs
at most MAX_DAEMONS such records whatever the fleet's size. The view puts the records side by
side and works out each daemon's share of each resource: its grants over all the daemons'.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated

import msgspec

__all__ = [
    "MAX_ACTIVE",
    "MAX_DAEMONS",
    "MAX_RECORD_BYTES",
    "MAX_RESOURCES",
    "MAX_TOOLS",
    "FleetRecord",
    "FleetResource",
    "ResourceUse",
    "decode_record",
    "encode_record",
    "make_record",
    "view",
]

MAX_DAEMONS = 256  # records one read of the fleet returns (the others are counted)
MAX_RESOURCES = 64  # resources one record describes (the most granted)
MAX_ACTIVE = 1000  # resources one heartbeat marks active or counts daemons on (fallback share)
MAX_TOOLS = 16  # tools one record counts clients of
MAX_RECORD_BYTES = 16 << 10  # a record longer than this is skipped by readers

Text = Annotated[str, msgspec.Meta(max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0)]


class FleetResource(msgspec.Struct):
    """A resource one daemon uses: tokens it granted in the last window, and the limit in
    force there (None: no limit)."""

    id: Text
    granted: Count
    limit: Count | None = None
    window: float | None = None


class FleetRecord(msgspec.Struct):
    """One daemon, as it describes itself. Unknown fields are ignored, so that daemons of a
    later version may add some."""

    id: Text  # unique across hosts and restarts (redis_admission.daemon_identity)
    host: Text
    pid: Count
    version: Text
    started: float  # Unix seconds
    clients: Annotated[dict[Text, Count], msgspec.Meta(max_length=MAX_TOOLS)]
    resources: Annotated[list[FleetResource], msgspec.Meta(max_length=MAX_RESOURCES)]
    omitted: Count = 0  # resources in use beyond MAX_RESOURCES


class ResourceUse(msgspec.Struct, frozen=True):
    """What one daemon did with one resource in its last window, for its record and for the
    fallback share: `active` when a client asked for it or was granted tokens then."""

    id: str
    granted: int
    limit: int | None
    window: float | None
    active: bool


def make_record(
    identity: str,
    host: str,
    pid: int,
    version: str,
    started: float,
    clients: Mapping[str, int],
    uses: Iterable[ResourceUse],
) -> FleetRecord:
    """This daemon's record, within the bounds (the most granted resources, the most used
    tools; a long host name cut)."""
    used = sorted((u for u in uses if u.active), key=lambda u: (-u.granted, u.id))
    tools = sorted(clients.items(), key=lambda item: (-item[1], item[0]))[:MAX_TOOLS]
    return FleetRecord(
        id=identity[:256],
        host=host[:256],
        pid=pid,
        version=version[:256],
        started=started,
        clients={tool[:256]: count for tool, count in tools},
        resources=[
            FleetResource(u.id[:256], u.granted, u.limit, u.window) for u in used[:MAX_RESOURCES]
        ],
        omitted=max(0, len(used) - MAX_RESOURCES),
    )


def encode_record(record: FleetRecord) -> bytes:
    return msgspec.json.encode(record)


def decode_record(data: bytes) -> FleetRecord | None:
    """A record read from Redis; None for one too long or not a record (written by something
    else, or damaged): readers skip it rather than fail."""
    if len(data) > MAX_RECORD_BYTES:
        return None
    try:
        return msgspec.json.decode(data, type=FleetRecord)
    except msgspec.DecodeError:
        return None


def view(
    records: Iterable[FleetRecord], own: str, total: int, read: int, skipped: int = 0
) -> dict[str, object]:
    """The fleet as the `fleet` query answers it: every daemon read (this one, `own`, first,
    then by host and pid), each resource with its `share` of the tokens all the daemons read
    granted there in their last window (None when none were). `total` is how many live
    daemons Redis counts, `read` how many records were read (MAX_DAEMONS at most:
    `truncated` when fewer than `total`); `skipped` those read that were not records."""
    daemons = sorted(records, key=lambda r: (r.id != own, r.host, r.pid, r.id))
    granted: dict[str, int] = {}
    for record in daemons:
        for resource in record.resources:
            granted[resource.id] = granted.get(resource.id, 0) + resource.granted
    shown = []
    for record in daemons:
        entry = msgspec.to_builtins(record)
        entry["self"] = record.id == own
        for resource in entry["resources"]:
            all_granted = granted[resource["id"]]
            resource["share"] = resource["granted"] / all_granted if all_granted else None
        shown.append(entry)
    return {
        "daemons": shown,
        "total": max(total, read),
        "truncated": total > read,
        "skipped": skipped,
    }
