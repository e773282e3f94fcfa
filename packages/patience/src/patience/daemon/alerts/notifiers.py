"""Delivering alerts beyond the daemon's log: a command (the alert as JSON on its stdin) and a
webhook (Alertmanager's JSON, alertmanager.py).

Each notifier has an outbox: a bounded queue served by one asyncio task, so that a slow or
dead receiver never holds up the daemon (nothing on the request path waits for it). A failed
delivery is tried again after 1s, 2s, 4s ... up to a minute apart, ATTEMPTS times in all, then
dropped; when the queue is full the oldest notification is dropped. Every failure and drop is
counted (the `alerts` reply shows the counters) and logged, at most once a minute per
notifier.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable

from patience import __version__
from patience.daemon.alerts.alertmanager import payload
from patience.daemon.alerts.http_post import PostError, post_json, redact
from patience.daemon.logthrottle import LogThrottle

__all__ = ["ATTEMPTS", "CAPACITY", "Outbox", "command_sender", "webhook_sender"]

log = logging.getLogger("patience.daemon")

CAPACITY = 256  # notifications queued per notifier
ATTEMPTS = 10  # tries of one notification before it is dropped
FIRST_DELAY, MAX_DELAY = 1.0, 60.0  # seconds between tries: doubling from, capped at
TIMEOUT = 10.0  # seconds one try may take

Send = Callable[[dict[str, object]], Awaitable[None]]


class Outbox:
    """`name` says which notifier (shown in the log and the counters)."""

    def __init__(
        self,
        name: str,
        send: Send,
        capacity: int = CAPACITY,
        first_delay: float = FIRST_DELAY,
        timeout: float = TIMEOUT,
    ) -> None:
        self.name = name
        self.send = send
        self.first_delay = first_delay
        self.timeout = timeout
        self.queue: deque[dict[str, object]] = deque(maxlen=capacity)
        self.sent = self.failures = self.dropped = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._ready = asyncio.Event()
        self._said = LogThrottle(log)
        self._task: asyncio.Task[None] | None = None

    def put(self, alert: dict[str, object]) -> None:
        """Queue one notification; never waits."""
        if len(self.queue) == self.queue.maxlen:
            self.dropped += 1
            self._complain("queue full: dropped the oldest notification")
        self.queue.append(alert)
        self._ready.set()

    def stats(self) -> dict[str, object]:
        return {
            "notifier": self.name,
            "sent": self.sent,
            "failures": self.failures,
            "dropped": self.dropped,
            "queued": len(self.queue),
            "last_error": self.last_error,
            "last_error_at": self.last_error_at,
        }

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._serve())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.queue:
            log.warning("alerts: %s: %d notifications not delivered", self.name, len(self.queue))

    async def _serve(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self.queue:
                await self._deliver(self.queue[0])

    async def _deliver(self, alert: dict[str, object]) -> None:
        """Try one notification until it goes through or its tries are spent."""
        delay = self.first_delay
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with asyncio.timeout(self.timeout):
                    await self.send(alert)
            except Exception as exc:  # any failure of the receiver is counted, never raised
                self.failures += 1
                self.last_error = _reason(exc, self.timeout)
                self.last_error_at = time.time()
                self._complain(f"try {attempt} of {ATTEMPTS} failed: {self.last_error}")
            else:
                self.sent += 1
                self._pop(alert)
                return
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_DELAY)
        self.dropped += 1
        self._complain(f"gave up on a notification after {ATTEMPTS} tries")
        self._pop(alert)

    def _pop(self, alert: dict[str, object]) -> None:
        if self.queue and self.queue[0] is alert:  # still the head (a full queue drops it)
            self.queue.popleft()

    def _complain(self, what: str) -> None:
        self._said.log(logging.WARNING, self.name, f"alerts: {self.name}: {what}")


def _reason(exc: BaseException, timeout: float) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g}s"
    return str(exc) or type(exc).__name__


def command_sender(argv: list[str]) -> Send:
    """Run `argv` with the alert as one JSON line on stdin; exit status 0 is delivered."""

    async def send(alert: dict[str, object]) -> None:
        try:
            child = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise RuntimeError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None
        try:
            _, err = await child.communicate(json.dumps(alert).encode() + b"\n")
        except asyncio.CancelledError:  # timed out, or the daemon stops: leave nothing behind
            if child.returncode is None:
                child.kill()
                await child.wait()
            raise
        if child.returncode != 0:
            tail = err.decode(errors="replace").strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"{argv[0]} exited {child.returncode} {tail[0][:200]}".rstrip())

    return send


def webhook_sender(url: str, external_url: str = "") -> Send:
    """POST the Alertmanager message of the alert to `url`."""
    agent = f"patience-daemon/{__version__}"

    async def send(alert: dict[str, object]) -> None:
        body = json.dumps(payload(alert, external_url)).encode()
        try:
            await post_json(url, body, agent)
        except PostError as exc:
            raise RuntimeError(f"{redact(url)}: {exc}") from None

    return send
