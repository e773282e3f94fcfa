"""Cheap coordination per run (issue 13): `rpr --daemon` asks for the next start's tokens while
the current run is in flight (patience.grant_ahead), and reports its records in batches.

The rules of asking ahead are tested in-process with a fake connection (pure logic, no
clock: times are given); the rest through real `rpr` processes, a real daemon (in memory and
with the Redis backend on a real redis-server): every token is used by one start, every run's
record reaches the daemon (also after SIGTERM or SIGINT mid-run), and a limit holds for
several instances.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon_support import Daemon, short_dir
from integration_support import World, executions, json_runs, most_in_window, world
from patience.daemon.client import Grant
from patience.grant_ahead import FAST, MAX_BATCH, Ahead
from redis_support import redis_server
from tools import RPR

# ---- the rules, in-process ------------------------------------------------------------------


class FakeConnection:
    """What Ahead uses of a DaemonClient: answers each request ahead with `reply`."""

    def __init__(self, limit: int | None = None, granted: bool = True) -> None:
        self.limit = limit
        self.granted = granted
        self.asked: list[int] = []  # tokens of each request ahead
        self.asked_ahead = False

    def acquire_ahead(self, resource_id: str, tokens: int = 1) -> None:
        assert not self.asked_ahead, "a second request ahead before the first was read"
        self.asked.append(tokens)
        self.asked_ahead = True

    def ahead(self) -> Grant:
        assert self.asked_ahead
        self.asked_ahead = False
        reply: dict[str, object] = {
            "granted": self.granted,
            "tokens": self.asked[-1],
            "retry_after": 0.0,
            "reset_after": 0.0,
        }
        if self.limit is not None:
            reply.update(limit=self.limit, window=1.0, algorithm="diophantine")
        return Grant(reply)


def run_starts(
    ahead: Ahead, starts: int, gap: float = 0.001, unlimited: bool = True
) -> tuple[int, int]:
    """`starts` starts `gap` apart, each on a token asked ahead when there is one, else on
    its own (as the gate does); returns (starts on their own token, on one asked ahead)."""
    own = from_ahead = 0
    for i in range(starts):
        now = i * gap
        if ahead.pending and ahead.take(now):
            from_ahead += 1
            ahead.started(unlimited, now, own=False)
        else:
            own += 1
            ahead.started(unlimited, now, own=True)
    return own, from_ahead


@settings(max_examples=300, deadline=None)
@given(
    st.integers(min_value=0, max_value=3000),
    st.floats(min_value=1e-5, max_value=FAST * 0.99),
)
def test_tokens_asked_ahead_are_exactly_the_starts_planned(planned: int, gap: float) -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", planned)  # type: ignore[arg-type]
    own, from_ahead = run_starts(ahead, planned, gap)
    assert sum(connection.asked) == from_ahead  # none left over
    assert own + from_ahead == planned
    assert not ahead.pending


def test_batches_double_up_to_the_most_and_most_starts_do_not_ask() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 2000)  # type: ignore[arg-type]
    own, _ = run_starts(ahead, 2000)
    assert connection.asked[:7] == [1, 2, 4, 8, 16, 32, 32]
    assert max(connection.asked) == MAX_BATCH
    assert own == 2  # the first two: no pace known yet
    assert len(connection.asked) < 2000 / 20  # one request per batch, not per start


def test_a_batch_lasts_half_of_fast_at_the_pace_of_the_starts() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 1000)  # type: ignore[arg-type]
    run_starts(ahead, 1000, gap=0.01)
    assert max(connection.asked) == 5  # 5 x 10 ms: half of FAST (100 ms)


def test_tokens_not_used_within_fast_of_the_request_are_given_up() -> None:
    """A run slower than the ones before: its tokens asked ahead would stand for starts
    later than FAST after the request (a pause or a limit set meanwhile would not hold)."""
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
    ahead.started(True, 0.0, own=True)
    ahead.started(True, 0.001, own=True)  # asks 1 ahead at 0.001
    assert not ahead.take(0.001 + FAST * 1.01)
    assert not ahead.pending and not connection.asked_ahead  # read, and not used


def test_without_a_planned_count_one_token_at_most_is_asked_ahead() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", None)  # type: ignore[arg-type]
    run_starts(ahead, 500)
    assert set(connection.asked) == {1}


def test_slow_starts_ask_nothing_ahead() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
    own, _ = run_starts(ahead, 100, gap=FAST * 1.5)
    assert connection.asked == [] and own == 100


def test_a_limited_resource_asks_nothing_ahead() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
    own, _ = run_starts(ahead, 100, unlimited=False)
    assert connection.asked == [] and own == 100


def test_a_token_that_comes_back_with_a_limit_or_refused_is_not_used() -> None:
    for connection in (FakeConnection(limit=5), FakeConnection(granted=False)):
        ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
        ahead.started(True, 0.0, own=True)
        ahead.started(True, 0.001, own=True)
        assert connection.asked == [1]
        assert not ahead.take(0.002)  # the start asks on its own, and waits as told
        assert not connection.asked_ahead  # the answer was read: the connection is free


def test_tokens_from_before_a_throttle_signal_are_not_used() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
    run_starts(ahead, 5)  # asked: 1, 2, 4 ...
    assert ahead.pending
    ahead.throttled()
    assert not ahead.take(0.005)
    assert not ahead.pending and not connection.asked_ahead


def test_drop_reads_a_pending_answer_and_forgets_tokens_in_hand() -> None:
    connection = FakeConnection()
    ahead = Ahead(connection, "r", 100)  # type: ignore[arg-type]
    run_starts(ahead, 4)
    ahead.drop()
    assert not ahead.pending and not connection.asked_ahead


# ---- real rpr, real daemons ----------------------------------------------------------------


@contextlib.contextmanager
def backend(w: World, kind: str, limits: str = "") -> Iterator[Daemon]:
    """A daemon on the world's socket: in memory, or with the Redis backend."""
    with contextlib.ExitStack() as stack:
        config = ""
        if kind == "redis":
            server = stack.enter_context(redis_server(stack.enter_context(short_dir())))
            config = f'[daemon]\nbackend = "redis"\nredis_url = "{server.url}"\n'
        if limits:
            config += f"[rate_limiting.resources]\n{limits}\n"
        daemon = w.daemon(config).start()
        stack.callback(daemon.ensure_stopped)
        yield daemon


def state(daemon: Daemon, resource_id: str) -> dict[str, Any]:
    with daemon.client("patience", f"probe-{time.monotonic_ns()}") as client:
        return dict(client.resource_state(resource_id)[0])


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_tokens_are_the_starts_and_every_run_is_stored(tmp_path: Path, kind: str) -> None:
    with world(tmp_path) as w, backend(w, kind) as daemon:
        done = w.rpr("count", "--times", "700", "-q", *w.daemon_flags("fast"), "--", "true")
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
        # Each token one start, but for those given up when a run came later than FAST after
        # they were asked for (a loaded machine): counted as granted, and few.
        assert 700 <= state(daemon, "fast")["tokens_granted"] <= 770
        stored = executions(daemon.db, "fast")
        assert sorted(r["execution_number"] for r in stored) == list(range(1, 701))
        daemon.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_records_reach_the_daemon_after_a_signal_mid_run(tmp_path: Path, sig: int) -> None:
    """Stopped mid-run, rpr still delivers the record of every run it made; the tokens it
    asked ahead and did not use are counted as granted (one batch at the end, and the few
    given up on the way when a run came late)."""
    with world(tmp_path) as w, backend(w, "memory") as daemon:
        argv = ["count", "--times", "1000000", "--json", *w.daemon_flags("fast"), "--", "true"]
        proc = w.start(RPR, *argv)
        deadline = time.monotonic() + 60
        while not executions_or_none(daemon) and time.monotonic() < deadline:
            time.sleep(0.1)  # runs are going and records arriving
        time.sleep(0.5)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
        assert "not delivered" not in err, err
        runs = json_runs(out)
        assert len(runs) > 50
        stored = executions(daemon.db, "fast")
        assert sorted(r["execution_number"] for r in stored) == [r["iteration"] for r in runs]
        granted = state(daemon, "fast")["tokens_granted"]
        assert len(runs) <= granted <= len(runs) * 1.1 + MAX_BATCH
        daemon.stop()


def executions_or_none(daemon: Daemon) -> bool:
    return daemon.db.exists() and bool(executions(daemon.db, "fast"))


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_a_limit_holds_for_several_instances_running_back_to_back(
    tmp_path: Path, kind: str
) -> None:
    """Three rpr asking as fast as they can for a resource of 4 per 2s: never more than 4
    starts in any window of 2s (nothing is asked ahead under a limit). The starts are a
    little later than their grants (more so on a loaded machine): windows 3% shorter."""
    with world(tmp_path) as w, backend(w, kind, '"tight" = { limit = 4, window = "2s" }'):
        argv = ["count", "--times", "5", "--json", *w.daemon_flags("tight"), "--", "true"]
        procs = [w.start(RPR, *argv) for _ in range(3)]
        starts: list[float] = []
        for proc in procs:
            out, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            starts += [run["actual_start"] for run in json_runs(out)]
        assert len(starts) == 15
        assert most_in_window(starts, 2.0 * 0.97) <= 4


def test_a_daemon_restarted_mid_run_loses_no_run_and_no_record(tmp_path: Path) -> None:
    """Tokens asked ahead of a daemon that stops are given up: rpr goes on (without it, no
    limit to keep, or on a new connection to the new one when it is already there), and
    every run's record reaches the new daemon."""
    with world(tmp_path) as w, backend(w, "memory") as daemon:
        argv = ["count", "--times", "3000", "--json", *w.daemon_flags("fast")]
        proc = w.start(RPR, *argv, "--no-daemon-auto-start", "--", "true")
        deadline = time.monotonic() + 60
        while not executions_or_none(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)
        daemon.stop(signal.SIGTERM)
        daemon.start()
        restarted = time.time()
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        runs = json_runs(out)
        assert [r["iteration"] for r in runs] == list(range(1, 3001))
        assert runs[-1]["actual_start"] > restarted  # it went on through the new daemon
        stored = executions(daemon.db, "fast")
        assert sorted(r["execution_number"] for r in stored) == list(range(1, 3001))
        daemon.stop()


def test_a_batch_of_records_is_bounded_before_it_is_stored(tmp_path: Path) -> None:
    """The records of one `metrics` message are at most 1,000: a hostile batch of 1,001 is
    refused whole with the bound named, nothing of it stored, and the connection goes on."""
    record = (
        f'{{"tool":"repeater","resource_id":"batch","start_time":{time.time()},'
        '"duration":0.1,"success":true}'
    )
    with world(tmp_path) as w, backend(w, "memory") as daemon, daemon.raw() as raw:
        reply = raw.ask('{"type":"metrics","records":[' + ",".join([record] * 1001) + "]}")
        assert reply["error"] == (
            "invalid metrics format: Expected `array` of length <= 1000 - at `$.records`"
        )
        assert raw.ask('{"type":"ping"}')["type"] == "pong"
        full = raw.ask('{"type":"metrics","records":[' + ",".join([record] * 1000) + "]}")
        assert full == {"type": "metrics_response", "accepted": 1000}
        assert len(executions(daemon.db, "batch")) == 1000
