"""Bad input never crashes the daemon: each bad line gets an error naming the problem (the
field, for a wrong type), oversized and silent connections are closed, a flood of connections is
answered with an error, and the daemon keeps serving others with bounded memory."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon_support import Daemon, Raw, running
from patience.daemon import protocol

CONFIG = """
[daemon]
idle_timeout = "1500ms"
max_connections = 100

[rate_limiting.resources]
"api" = { limit = 1000, window = "1s" }
"""
# Idle connections are looked for every 50ms (not every second): a test waits for the idle
# timeout itself, not for the next look.
INTERVALS = {"housekeeping": 0.05}


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    with running(CONFIG, intervals=INTERVALS) as d:
        yield d


def still_serving(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        assert raw.ask('{"type":"ping"}')["type"] == "pong"


def error_of(raw: Raw, line: str | bytes) -> str:
    reply = raw.ask(line)
    assert reply["type"] == "error", reply
    return str(reply["error"])


def test_malformed_json_gets_an_error_and_the_connection_stays(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        assert error_of(raw, '{"type": "ping"') == "invalid JSON"
        assert error_of(raw, "[1, 2") == "invalid JSON"
        assert error_of(raw, b'{"type":"acquire","resource_id":"\xff\xfe"}') == "invalid JSON"
        assert error_of(raw, "NaN") == "invalid JSON"
        assert raw.ask('{"type":"ping"}')["type"] == "pong"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('{"type":"acquire","resource_id":"api","tokens":"2"}', "`$.tokens`"),
        ('{"type":"acquire","resource_id":"api","tokens":0}', "`$.tokens`"),
        ('{"type":"acquire","resource_id":"api","tokens":1e300}', "`$.tokens`"),
        ('{"type":"acquire","resource_id":"api","tokens":99999999999999999999999}', "`$.tokens`"),
        ('{"type":"acquire","resource_id":"api","max_wait":-1}', "`$.max_wait`"),
        ('{"type":"acquire","resource_id":"api","max_wait":"5s"}', "`$.max_wait`"),
        ('{"type":"acquire","resource_id":""}', "`$.resource_id`"),
        ('{"type":"acquire","resource_id":"' + "x" * 300 + '"}', "`$.resource_id`"),
        ('{"type":"acquire"}', "`resource_id`"),
        ('{"type":"acquire","resource_id":"api","max_wiat":5}', "unknown field `max_wiat`"),
        ('{"type":"acquire","resource_id":"a b"}', "resource_id: "),
        ('{"type":"acquire","resource_id":"api","tokens":5000}', "tokens: 5000 at once"),
        ('{"type":"acquire","resource_id":"new","limit":5}', "window: a declared limit"),
        ('{"type":"handshake","versions":"2.0"}', "`$.versions`"),
        ('{"type":"handshake","versions":["2.0"],"tool":"repeater"}', "needs client_id"),
        ('{"type":"handshake","versions":["2.0"],"client_id":"x","tool":"cron"}', "`$.tool`"),
        ('{"type":"handshake","versions":["9.9"]}', "unsupported protocol version: 9.9"),
        ('{"type":"metrics","records":[]}', "`$.records`"),
        (
            '{"type":"metrics","records":[{"tool":"repeater","resource_id":"r",'
            '"start_time":1,"duration":"fast","success":true}]}',
            "`$.records[0].duration`",
        ),
        (
            '{"type":"metrics","records":[{"tool":"repeater","resource_id":"r",'
            '"start_time":1,"duration":1,"success":true,"labels":{"a":1}}]}',
            "`$.records[0].labels[...]`",
        ),
        (
            '{"type":"metrics","records":[{"tool":"repeater","resource_id":"r",'
            '"start_time":1,"duration":1,"success":true,"record_id":""}]}',
            "`$.records[0].record_id`",
        ),
        (
            '{"type":"metrics","records":[{"tool":"repeater","resource_id":"r",'
            '"start_time":1,"duration":1,"success":true,"record_id":"' + "x" * 129 + '"}]}',
            "`$.records[0].record_id`",
        ),
        (
            '{"type":"metrics","records":[{"tool":"repeater","resource_id":"r",'
            '"start_time":1,"duration":1,"success":true,"record_id":7}]}',
            "`$.records[0].record_id`",
        ),
        ('{"type":"query","query":"everything"}', "`$.query`"),
        ('{"type":"query","query":"resource_summary","tools":["cron"]}', "`$.tools[0]`"),
        (
            '{"type":"query","query":"resource_summary","time_range":{"start":5,"end":1}}',
            "time_range.end is before",
        ),
        (
            '{"type":"register_schedule","resource_id":"r","schedule":{"type":"hourly"}}',
            "`$.schedule.type`",
        ),
        ('{"type":"ping","extra":1}', "unknown field `extra`"),
        ("42", "expected a JSON object"),
        ('{"type":7}', "unknown message type: 7"),
        ('{"hello":"there"}', 'message has no "type"'),
    ],
)
def test_wrong_input_gets_an_error_naming_the_field(
    daemon: Daemon, line: str, expected: str
) -> None:
    with daemon.raw() as raw:
        assert expected in error_of(raw, line)
        assert raw.ask('{"type":"ping"}')["type"] == "pong"


def test_deep_nesting_is_an_error_not_a_crash(daemon: Daemon) -> None:
    with daemon.raw() as raw:
        error_of(raw, "[" * 100_000 + "]" * 100_000)
    still_serving(daemon)


@pytest.mark.parametrize("with_newline", [True, False])
def test_a_two_mebibyte_line_is_refused_and_the_connection_closed(
    daemon: Daemon, with_newline: bool
) -> None:
    line = b'{"type":"ping","pad":"' + b"x" * (2 << 20) + b'"}' + (b"\n" if with_newline else b"")
    with daemon.raw() as raw:
        try:
            raw.send(line)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: also a refusal
        reply = raw.line()
        assert json.loads(reply) == {
            "type": "error",
            "error": "line longer than 1048576 bytes; closing",
        }
        assert raw.line() == b""
    still_serving(daemon)


def test_a_line_just_under_the_cap_is_read(daemon: Daemon) -> None:
    pad = "x" * ((1 << 20) - 64)
    with daemon.raw() as raw:
        assert "unknown field `pad`" in error_of(raw, '{"type":"ping","pad":"' + pad + '"}')


def test_binary_garbage_gets_errors_and_others_are_served(daemon: Daemon) -> None:
    garbage = os.urandom(200_000).replace(b"\n", b"") + b"\n" + os.urandom(5000)
    garbage = garbage.replace(b"\n", b"\x00")[:-1] + b"\n"
    with daemon.raw() as raw:
        raw.send(garbage)
        assert json.loads(raw.line())["type"] == "error"
        assert raw.ask('{"type":"ping"}')["type"] == "pong"
    still_serving(daemon)


def test_a_silent_client_is_disconnected_after_the_idle_timeout(daemon: Daemon) -> None:
    with daemon.raw(timeout=15) as silent:
        started = time.monotonic()
        still_serving(daemon)  # others are served meanwhile
        assert silent.line() == b""  # closed by the daemon, without a word
        assert 1.0 <= time.monotonic() - started <= 10.0


def test_an_idle_client_reconnects_transparently(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.ping()
        time.sleep(2.0)  # beyond the idle timeout: the daemon has closed our connection
        assert client.acquire("api").granted


def test_a_thousand_connections_at_once() -> None:
    """Over the cap, each excess connection gets an error; the admitted ones time out when
    silent; the daemon serves newcomers again afterwards and its memory stays bounded."""
    with running(CONFIG, intervals=INTERVALS) as daemon:
        before = daemon.rss_kib()
        sockets = []
        try:
            for _ in range(1000):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(20)
                sock.connect(daemon.socket)
                sockets.append(sock)
            refused = admitted = 0
            for sock in sockets:
                data = b""
                while chunk := sock.recv(4096):
                    data += chunk
                if data:
                    assert json.loads(data) == {
                        "type": "error",
                        "error": "too many connections (100); retry later",
                    }
                    refused += 1
                else:
                    admitted += 1
        finally:
            for sock in sockets:
                sock.close()
        assert (admitted, refused) == (100, 900)
        still_serving(daemon)
        assert daemon.rss_kib() - before < 50_000


def test_a_client_that_never_reads_is_throttled_not_buffered(daemon: Daemon) -> None:
    before = daemon.rss_kib()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(daemon.socket)
        sock.settimeout(3)
        sent = 0
        chunk = b'{"type":"ping"}\n' * 10_000
        with pytest.raises(TimeoutError):
            while sent < 500_000_000:
                sock.sendall(chunk)
                sent += len(chunk)
        still_serving(daemon)
        assert daemon.rss_kib() - before < 50_000
    still_serving(daemon)


def test_many_unfinished_lines_cannot_exhaust_memory(daemon: Daemon) -> None:
    before = daemon.rss_kib()
    sockets = []
    try:
        for _ in range(90):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(daemon.socket)
            sock.settimeout(5)
            try:
                sock.sendall(b'{"pad":"' + b"x" * 1_000_000)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass
            sockets.append(sock)
        still_serving(daemon)
        assert daemon.rss_kib() - before < 150_000
    finally:
        for sock in sockets:
            sock.close()
    still_serving(daemon)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(
                    st.sampled_from(
                        [
                            "type",
                            "resource_id",
                            "tokens",
                            "max_wait",
                            "records",
                            "query",
                            "versions",
                        ]
                    )
                    | st.text(max_size=8),
                    inner,
                    max_size=5,
                )
            ),
            max_leaves=12,
        ).map(lambda v: json.dumps(v).encode()),
    )
)
def test_property_any_line_gets_exactly_one_reply(daemon: Daemon, line: bytes) -> None:
    line = line.replace(b"\n", b" ")
    if not line.strip():
        return
    with daemon.raw() as raw:
        raw.send(line + b'\n{"type":"ping"}\n')
        first = json.loads(raw.line())
        second = json.loads(raw.line())
    assert isinstance(first, dict) and isinstance(first.get("type"), str)
    assert second["type"] == "pong"


@given(st.binary(max_size=500))
def test_property_decoding_fails_only_with_protocol_errors(data: bytes) -> None:
    try:
        protocol.decode(data)
    except protocol.ProtocolError as exc:  # anything else escaping fails the test
        assert str(exc)
