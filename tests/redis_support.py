"""A real redis-server on a Unix socket in a private directory, for the Redis backend tests:
no persistence, no TCP port, stopped (and restartable on the same socket) by the test."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

SERVER = shutil.which("redis-server") or "redis-server"

# A client process for daemon_support.worker: waits until `start`, takes `count` tokens of
# `resource` one at a time, and prints each grant's time.
TAKE = """
import sys, time
from patience.daemon.client import DaemonClient
socket_path, client_id, resource, count, start = sys.argv[1:6]
time.sleep(max(0.0, float(start) - time.time()))
with DaemonClient(socket_path, "repeater", client_id, timeout=30.0) as client:
    for _ in range(int(count)):
        grant = client.acquire(resource, max_wait=60.0)
        assert grant.granted, grant
        print(time.time(), flush=True)
"""


class RedisServer:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.socket = str(directory / "redis.sock")
        self.url = f"unix://{self.socket}"
        self.log = directory / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RedisServer:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    SERVER,
                    "--port",
                    "0",
                    "--unixsocket",
                    self.socket,
                    "--unixsocketperm",
                    "700",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(self.dir),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + 20.0
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server exited:\n{self.log.read_text()}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return self
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(20)

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=self.socket, socket_timeout=5.0)


@contextlib.contextmanager
def redis_server(directory: Path) -> Iterator[RedisServer]:
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
