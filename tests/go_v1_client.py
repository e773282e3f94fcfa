"""A stand-in for the unpatched Go `patience diophantine --daemon`, as it behaves on the wire.

Read from its source and seen on the wire (shared/reference/patience-v1-wire-protocol.md):
handshake, the `test-connection` probe, then ONE schedule_request with request_time truncated
to whole Unix seconds, inside a 5-second context started just before it. On can_schedule false
it sleeps until wait_until (request_time + 1 minute when the reply has none, or is an error) and
runs the command without asking again. Then, only if the context is still alive, it registers
its ORIGINAL plan. The reason is never read.

usage: go_v1_client.py SOCKET RESOURCE LIMIT WINDOW_MS OFFSETS_MS OUT [--no-register]
Runs `echo "PLANNED $(date +%s.%N)" >> OUT` as its command: the time the daemon's answer set
for the run (wait_until, or when a yes arrived) and the command's own timestamp.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from datetime import datetime

HANDSHAKE = {"client": "patience-cli", "type": "handshake", "version": "1.0"}
PROBE = {
    "rate_limit": 1,
    "request_time": -62135596800,
    "resource_id": "test-connection",
    "retry_offsets": [],
    "type": "schedule_request",
    "window_ms": 1000,
}
CONTEXT = 5.0


def ask(sock: socket.socket, reader: object, message: dict[str, object]) -> dict[str, object]:
    sock.sendall(json.dumps(message, separators=(",", ":"), sort_keys=True).encode() + b"\n")
    line = reader.readline()  # type: ignore[attr-defined]
    reply: dict[str, object] = json.loads(line)
    return reply


def main() -> int:
    sock_path, resource, limit, window_ms, offsets_text, out = sys.argv[1:7]
    registers = "--no-register" not in sys.argv[7:]
    offsets = [int(o) for o in offsets_text.split(",") if o]
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(sock_path)
    reader = sock.makefile("r")
    assert ask(sock, reader, HANDSHAKE)["status"] == "ok"
    ask(sock, reader, PROBE)
    context_start = time.monotonic()
    request_time = int(time.time())
    reply = ask(
        sock,
        reader,
        {
            "rate_limit": int(limit),
            "request_time": request_time,
            "resource_id": resource,
            "retry_offsets": offsets,
            "type": "schedule_request",
            "window_ms": int(window_ms),
        },
    )
    planned = time.time()
    if reply.get("can_schedule") is not True:
        planned = request_time + 60.0
        if isinstance(reply.get("wait_until"), str):
            text = str(reply["wait_until"]).replace("Z", "+00:00")
            planned = datetime.fromisoformat(text).timestamp()
        time.sleep(max(0.0, planned - time.time()))
    command = 'echo "$0 $(date +%s.%N)" >> "$1"'
    subprocess.run(["sh", "-c", command, repr(planned), out], check=True)
    if registers and time.monotonic() - context_start < CONTEXT:
        entries = [
            {
                "expires_at": request_time + offset // 1000 + int(window_ms) // 1000,
                "id": f"{resource}-{request_time}-{i}",
                "resource_id": resource,
                "scheduled_at": request_time + offset // 1000,
            }
            for i, offset in enumerate(offsets)
        ]
        ask(sock, reader, {"requests": entries, "type": "register_request"})
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
