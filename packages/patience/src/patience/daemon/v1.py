"""Protocol 1.0, the Go `patience diophantine --daemon`'s, translated: its schedule requests
become bookings (patience.daemon.ledger), its registrations confirm them, its run metrics
become execution records; the replies are byte-compatible with the Go server's, times in
RFC 3339 UTC with milliseconds (see docs/protocol.md, "Protocol 1.0")."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from patience.daemon import protocol
from patience.daemon.coordinator import Coordinator
from patience.daemon.framing import Session
from patience.daemon.protocol import (
    ExecutionMetrics,
    MetricsResponse,
    RegisterRequest,
    RegisterResponse,
    RunMetrics,
    ScheduleRequest,
    ScheduleResponse,
)
from patience.durations import format_duration

if TYPE_CHECKING:
    from patience.daemon.handlers import Handler, Handlers

__all__ = ["handlers", "rfc3339"]


def handlers(core: Handlers, coordinator: Coordinator) -> dict[type, Handler]:
    """The 1.0 messages' handlers, for `core`'s table."""
    translation = _V1(core, coordinator)
    return {
        ScheduleRequest: translation.schedule,
        RegisterRequest: translation.register,
        RunMetrics: translation.run_metrics,
    }


class _V1:
    def __init__(self, core: Handlers, coordinator: Coordinator) -> None:
        self.core = core
        self.coordinator = coordinator

    def schedule(self, session: Session, message: ScheduleRequest) -> bytes:
        """Every answer is a booking (patience.daemon.bookings)."""
        client = self.core.client_for(session)
        answer = self.coordinator.schedule_v1(client, message, time.monotonic(), time.time())
        if answer.fits:
            return protocol.encode(
                ScheduleResponse(
                    can_schedule=True,
                    reason="request scheduled",
                    message="request scheduled",
                    status="ok",
                    scheduled_at=rfc3339(answer.start),
                    expires_at=rfc3339(answer.start + message.window_ms / 1000.0),
                )
            )
        wait_until = rfc3339(answer.start, round_up=True)
        limit = f"{answer.limit} per {format_duration(answer.window)}"
        if answer.never:
            reason = (
                f"{len(message.retry_offsets)} planned attempts (offsets"
                f" {_offsets(message.retry_offsets)}) can never fit the limit of"
                f" {message.resource_id}, {limit}; its first attempt is booked at {wait_until}"
            )
            self.core.warn(
                f"never-fits:{message.resource_id}", f"protocol 1.0 client {client.id}: {reason}"
            )
        else:
            reason = (
                f"the limit of {message.resource_id}, {limit}, is reached; booked from {wait_until}"
            )
        return protocol.encode(
            ScheduleResponse(
                can_schedule=False,
                reason=reason,
                message=reason,
                status="ok",
                wait_until=wait_until,
            )
        )

    def register(self, session: Session, message: RegisterRequest) -> bytes:
        client = self.core.client_for(session)
        self.coordinator.register_v1(client, message.requests, time.monotonic(), time.time())
        return protocol.encode(
            RegisterResponse(success=True, status="ok", message="requests registered successfully")
        )

    def run_metrics(self, session: Session, message: RunMetrics) -> bytes:
        """The Go tool's metrics: one record per attempt, under its derived resource id."""
        command = message.command.split()
        resource_id = f"cmd-{os.path.basename(command[0])}" if command else "cmd-unknown"
        attempts = message.attempts or []
        records = [
            ExecutionMetrics(
                tool="patience",
                resource_id=resource_id,
                start_time=max(0.0, message.timestamp),
                duration=max(0.0, attempt.duration_seconds),
                success=attempt.success,
                exit_code=attempt.exit_code,
                command=command,
                attempt_number=number,
                labels={"protocol": "1.0", "final_status": message.final_status[:64]},
            )
            for number, attempt in enumerate(attempts[:1000], 1)
        ]
        accepted = self.core.store_records(session, records) if records else 0
        return protocol.encode(MetricsResponse(accepted=accepted))


def rfc3339(unix: float, round_up: bool = False) -> str:
    """RFC 3339 UTC with milliseconds, valid for any year Go can print (0001 onwards)."""
    from datetime import UTC, datetime, timedelta

    # Up, via whole microseconds: a time that is a whole millisecond already (as a booked
    # wait_until is) must not move a millisecond through float error.
    millis = -(-round(unix * 1e6) // 1000) if round_up else unix * 1000 // 1
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        moment = epoch + timedelta(milliseconds=millis)
    except OverflowError:
        moment = datetime.min.replace(tzinfo=UTC) if unix < 0 else datetime.max.replace(tzinfo=UTC)
    text = (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    )
    if moment.microsecond:
        text += f".{moment.microsecond // 1000:03d}"
    return text + "Z"


def _offsets(offsets_ms: list[int]) -> str:
    shown = ",".join(format_duration(ms / 1000) for ms in offsets_ms[:8])
    return shown + (",..." if len(offsets_ms) > 8 else "")
