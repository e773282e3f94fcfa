"""Throttle feedback through a real daemon on a real socket (docs/adaptive-limits.md): the
pause every client sees, the learned limit in force and shown beside the declared or
configured one, the configuration keys, bad messages, the predictive wait of a refusal, the
learned limit across a restart (the state file) and across hosts (two daemons, one real
redis-server)."""

from __future__ import annotations

import contextlib
import json
import signal
import time
from pathlib import Path

import pytest

from daemon_support import Daemon, run_daemon, running, short_dir
from patience.daemon.client import DaemonClient
from redis_support import redis_server

API = "api:external:feedback"


def declare(client: DaemonClient, resource: str = API, limit: int = 100, wait: float = 0.0):  # type: ignore[no-untyped-def]
    from patience.settings import Limit

    return client.acquire(resource, max_wait=wait, limit=Limit(limit, 1.0))


def rate_limit(daemon: Daemon, resource: str = API) -> dict[str, object]:
    with daemon.client("patience", f"state-{time.monotonic_ns()}") as client:
        [state] = client.resource_state(resource)
    limit = state["rate_limit"]
    assert isinstance(limit, dict)
    return limit


def test_a_throttle_pauses_every_client_and_the_limit_learns() -> None:
    with running() as daemon, daemon.client("repeater", "rpr-1") as one:
        with daemon.client("patience", "patience-2") as two:
            for _ in range(10):
                assert declare(one).granted
            reply = one.feedback(API, "http_429", retry_after=1.0, status=429)
            # the refused rate: 10 grants in the window, halved
            assert reply["type"] == "feedback_response"
            assert reply["decreased"] is True and reply["limit"] == 5
            learned = reply["learned"]
            assert isinstance(learned, dict)
            assert learned["limit"] == 5 and learned["declared"] == 100
            assert learned["configured"] is None and learned["throttles"] == 1
            assert learned["paused_until"] == pytest.approx(time.time() + 1.0, abs=0.5)
            # the same episode: a second signal right after decreases nothing more
            again = two.feedback(API, "retry_after", retry_after=0.0)
            assert again["decreased"] is False and again["limit"] == 5
            refused = declare(two)  # another client, another tool: paused too
            assert not refused.granted and 0.5 < refused.retry_after <= 1.0
            assert refused.limit is not None and refused.limit.count == 5
            assert refused.limit_source == "learned:client:rpr-1"
            started = time.monotonic()
            granted = declare(two, wait=3.0)  # queued until the pause ends
            assert granted.granted and time.monotonic() - started >= 0.4
            state = rate_limit(daemon)
            assert state["limit"] == 5 and state["source"] == "learned:client:rpr-1"
            assert state["learned"]["limit"] == 5  # type: ignore[index]
            assert state["learned"]["throttles"] == 2  # type: ignore[index]
            [usage] = one.query("rate_limit_usage", API)
            assert usage["limit"] == 5 and usage["learned_from"] == 100  # beside the declared
        assert "throttled (http_429, from rpr-1): its limit is now 5 per 1s" in daemon.log_text()


def test_a_resource_without_any_limit_learns_one_at_its_first_throttle() -> None:
    with running() as daemon, daemon.client("repeater", "rpr-1") as client:
        assert client.acquire("api:bare").limit is None
        reply = client.feedback("api:bare", "http_429")
        assert reply["limit"] == 1  # from the floor, probing upward from there
        assert rate_limit(daemon, "api:bare")["source"] == "learned"


def test_configuration_decides_who_learns() -> None:
    config = """
[rate_limiting.resources]
"api:fixed" = { limit = 10, window = "1s" }
"api:adaptive" = { limit = 10, window = "1s", adaptive = true, decrease = 0.8, floor = 3 }
"api:never" = { adaptive = false }
"""
    with running(config) as daemon, daemon.client("repeater", "rpr-1") as client:
        for resource in ("api:fixed", "api:adaptive"):
            for _ in range(10):
                assert client.acquire(resource).granted
        # a configured limit does not learn unless asked to; the pause still holds
        fixed = client.feedback("api:fixed", "http_429", retry_after=0.3)
        assert fixed["limit"] == 10 and fixed["decreased"] is False and "learned" not in fixed
        assert not client.acquire("api:fixed").granted
        adaptive = client.feedback("api:adaptive", "http_429")
        assert adaptive["limit"] == 8 and adaptive["learned"]["configured"] == 10  # type: ignore[index]
        # an entry with only adaptive = false: no limit, nothing learned
        never = client.feedback("api:never", "http_429", retry_after=5.0)
        assert never["limit"] is None and client.acquire("api:never").granted


def test_bad_feedback_messages_get_an_error_naming_the_field() -> None:
    with running() as daemon, daemon.raw() as raw:
        cases = {
            '{"type":"feedback","resource_id":"api:x","signal":"teapot"}': "invalid feedback format: Invalid enum value 'teapot' - at `$.signal`",
            '{"type":"feedback","resource_id":"api:x","signal":"http_429","retry_after":-1}': "invalid feedback format: Expected `float` >= 0.0 - at `$.retry_after`",
            '{"type":"feedback","signal":"http_429"}': "invalid feedback format: Object missing required field `resource_id`",
            '{"type":"feedback","resource_id":"api:x","signal":"http_429","status":42}': "invalid feedback format: Expected `int` >= 100 - at `$.status`",
            '{"type":"feedback","resource_id":"api:x","signal":"exit","colour":1}': "invalid feedback format: Object contains unknown field `colour`",
        }
        for line, error in cases.items():
            reply = raw.ask(line)
            assert reply["type"] == "error" and str(reply["error"]).startswith(error), reply
        assert raw.ask('{"type":"ping"}')["type"] == "pong"


def test_a_refusal_says_how_long_the_wait_would_be_and_how_many_are_ahead() -> None:
    config = '[rate_limiting.resources]\n"api:slow" = { limit = 2, window = "2s" }\n'
    with running(config) as daemon, contextlib.ExitStack() as stack:
        clients = [stack.enter_context(daemon.client("repeater", f"rpr-{i}")) for i in range(4)]
        assert clients[0].acquire("api:slow").granted and clients[1].acquire("api:slow").granted
        raws = [stack.enter_context(daemon.raw()) for _ in range(2)]
        for i, raw in enumerate(raws):  # two requests queue, each willing to wait 10s
            raw.ask(
                f'{{"type":"handshake","versions":["2.0"],"client_id":"q-{i}","tool":"patience"}}'
            )
            raw.send('{"type":"acquire","resource_id":"api:slow","max_wait":10}\n')
        time.sleep(0.3)
        refused = clients[2].acquire("api:slow", max_wait=0.5)
        assert not refused.granted and refused.ahead == 2
        # the first token frees in ~1.7s, then the two ahead at 2 per 2s: about 3.7s
        assert refused.estimated_wait == pytest.approx(3.7, abs=0.4)


def test_the_learned_limit_survives_a_restart() -> None:
    with short_dir() as directory:
        daemon = Daemon(directory)
        try:
            daemon.start()
            with daemon.client("repeater", "rpr-1") as client:
                for _ in range(40):
                    declare(client)
                assert client.feedback(API, "http_429")["limit"] == 20
            assert daemon.stop() == 0
            state = json.loads((directory / "run" / "d.sock.state").read_text())
            assert state["learned"][0]["id"] == API
            daemon.start()
            with daemon.client("repeater", "rpr-1") as client:
                grant = declare(client)  # the declared 100 is not what holds: the learned 20
                assert grant.limit is not None and grant.limit.count == 20
            assert "restored the recent grants of 1 resources and 1 learned limits" in (
                daemon.log_text()
            )
        finally:
            daemon.ensure_stopped()


def test_learned_limits_and_pauses_are_shared_across_hosts(tmp_path: Path) -> None:
    with redis_server(tmp_path) as server, contextlib.ExitStack() as stack:
        text = f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\n'
        one, two = (Daemon(stack.enter_context(short_dir()), text).start() for _ in range(2))
        stack.callback(one.ensure_stopped)
        stack.callback(two.ensure_stopped)
        with one.client("repeater", "rpr-a") as a, two.client("patience", "pat-b") as b:
            for _ in range(30):
                declare(a)
            assert declare(b).granted
            assert a.feedback(API, "http_429", retry_after=3.0)["limit"] == 15
            deadline = time.monotonic() + 5.0
            while True:  # the other host hears of it within about a second
                state = rate_limit(two)
                if state.get("learned"):
                    break
                assert time.monotonic() < deadline, state
                time.sleep(0.1)
            assert state["limit"] == 15 and state["source"] == "learned:client:pat-b"
            refused = declare(b)  # and keeps to the pause the first host was given
            assert not refused.granted and refused.retry_after > 1.0


@pytest.mark.parametrize(
    ("entry", "error"),
    [
        ("{ decrease = 1.5 }", "decrease: expected a number from 0.01 to 0.99, got 1.5"),
        ("{ floor = 0 }", "floor: expected a whole number from 1 to 1099511627776, got 0"),
        ('{ adaptive = "yes" }', 'adaptive: expected true or false, got "yes"'),
        (
            "{ throttle_exit = 300 }",
            "throttle_exit: expected a whole number from 1 to 255, got 300",
        ),
        ('{ throttle_pattern = "(" }', "throttle_pattern:"),
        ("{ limit = 5, adaptive = true }", "expected window"),
    ],
)
def test_bad_learning_keys_stop_the_daemon_naming_the_key(entry: str, error: str) -> None:
    with short_dir() as directory:
        (directory / "c.toml").write_text(f'[rate_limiting.resources]\n"api:x" = {entry}\n')
        done = run_daemon(
            directory, "--config", str(directory / "c.toml"), "--socket", str(directory / "s")
        )
    assert done.returncode == 2, done.stderr
    assert 'rate_limiting.resources."api:x"' in done.stderr and error in done.stderr, done.stderr


def test_sigterm_mid_pause_is_still_a_clean_stop() -> None:
    with running() as daemon, daemon.client("repeater", "rpr-1") as client:
        declare(client)
        client.feedback(API, "http_429", retry_after=30.0)
        assert daemon.stop(signal.SIGTERM) == 0
