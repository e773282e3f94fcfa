"""`patience metrics` and `rpr metrics` against a real daemon on a temporary socket, after real
`rpr` and `patience` runs with --daemon: each form as JSON lines and as a table, piped and on a
pseudo-terminal; runs --follow; no daemon, no data and bad options; the `timeseries` and `runs`
messages' bounds on the wire."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon_support import Daemon
from integration_support import World, world
from tools import PATIENCE, RPR

BLOCKS = set("▁▂▃▄▅▆▇█")


@pytest.fixture(scope="module")
def busy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Daemon]]:
    """A daemon that saw 3 rpr runs (api:test:one, all fine) and 2 patience attempts
    (api:test:two, both exit 3)."""
    with world(tmp_path_factory.mktemp("metrics")) as w:
        daemon = w.daemon().start()
        try:
            r = w.rpr("count", "--times", "3", *w.daemon_flags("api:test:one"), "--", "true")
            assert r.returncode == 0, r.stderr
            p = w.patience(
                "fixed", "--attempts", "2", "--delay", "10ms", *w.daemon_flags("api:test:two"),
                "--", "sh", "-c", "exit 3",
            )  # fmt: skip
            assert p.returncode == 3, p.stderr
            yield w, daemon
        finally:
            daemon.ensure_stopped()


def metrics(w: World, *args: str, tool: str = PATIENCE) -> subprocess.CompletedProcess[str]:
    return w.run(tool, "metrics", *args, "--socket", w.socket)


def lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


def on_pty(w: World, *args: str, extra_env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `patience metrics ARGS` with a pseudo-terminal (100 columns) as its output."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    env = {**w.env, **(extra_env or {})}
    proc = subprocess.Popen(
        [PATIENCE, "metrics", *args, "--socket", w.socket],
        stdin=slave, stdout=slave, stderr=slave, env=env, cwd=w.home,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode().replace("\r\n", "\n")


def test_summary_per_resource_as_json_lines(busy: tuple[World, Daemon]) -> None:
    w, _ = busy
    r = metrics(w, "summary", "--json")
    assert r.returncode == 0, r.stderr
    rows = {row["resource_id"]: row for row in lines(r.stdout)}
    assert set(rows) == {"api:test:one", "api:test:two"}
    one, two = rows["api:test:one"], rows["api:test:two"]
    assert (one["runs"], one["successes"], one["failures"]) == (3, 3, 0)
    assert (two["runs"], two["failures"], two["success_rate"]) == (2, 2, 0.0)
    assert isinstance(one["duration_p95"], float) and one["last_run"] > time.time() - 300
    r = metrics(w, "summary", "--json", "--resource", "api:*:two", tool=RPR)
    assert [row["resource_id"] for row in lines(r.stdout)] == ["api:test:two"]


def test_tools_usage_runs_and_trend_as_json(busy: tuple[World, Daemon]) -> None:
    w, _ = busy
    tools = {row["tool"]: row for row in lines(metrics(w, "tools", "--json").stdout)}
    assert tools["repeater"]["runs"] == 3 and tools["patience"]["runs"] == 2
    assert tools["patience"]["success_rate"] == 0.0
    only = lines(metrics(w, "tools", "--json", "--tool", "rpr").stdout)
    assert [row["tool"] for row in only] == ["repeater"]
    usage = {row["resource_id"]: row for row in lines(metrics(w, "usage", "--json").stdout)}
    assert usage["api:test:one"]["tokens_granted"] == 3
    assert usage["api:test:one"]["requests_refused"] == 0
    runs = lines(metrics(w, "runs", "--json", "--limit", "3").stdout)
    assert [run["resource_id"] for run in runs] == ["api:test:one", "api:test:two", "api:test:two"]
    assert [run["exit_code"] for run in runs][-2:] == [3, 3]
    assert runs[0]["start_time"] <= runs[-1]["start_time"]  # oldest first, as tail prints
    points = lines(metrics(w, "trend", "--json", "--since", "1h", "--step", "5m").stdout)
    assert len(points) in (12, 13) and sum(p["runs"] for p in points) == 5
    assert all(p["time"] % 300 == 0 for p in points)


def test_tables_when_piped_are_plain(busy: tuple[World, Daemon]) -> None:
    w, _ = busy
    for form, header in (
        ("summary", "RESOURCE"), ("tools", "TOOL"), ("usage", "RESOURCE"), ("runs", "STARTED"),
        ("trend", "TIME"),
    ):  # fmt: skip
        r = metrics(w, form, tool=RPR)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split()[0] == header, r.stdout
        assert "\033[" not in r.stdout and not BLOCKS & set(r.stdout)
    summary = metrics(w, "summary").stdout.splitlines()
    assert summary[0].split()[:4] == ["RESOURCE", "RUNS", "OK", "FAILED"]
    assert summary[2].split()[:4] == ["api:test:two", "2", "0", "2"]
    trend = metrics(w, "trend", "--since", "10m", "--step", "1m").stdout.splitlines()
    assert trend[0].split() == ["TIME", "RUNS", "SUCCESS", "P50", "P95"]
    assert len(trend) >= 11


def test_on_a_terminal_tables_have_colour_and_the_trend_is_a_chart(
    busy: tuple[World, Daemon],
) -> None:
    w, _ = busy
    code, out = on_pty(w, "summary")
    assert code == 0 and "\033[1mRESOURCE" in out and "\033[31m" in out  # failures in red
    code, out = on_pty(w, "trend", "--since", "1h", "--step", "1m")
    assert code == 0, out
    chart = out.splitlines()
    labels = [line.split()[0] for line in chart[1:]]
    assert labels == ["runs", "success", "p50", "p95"], out
    assert BLOCKS & set(chart[1]) and "5 in all" in chart[1]
    assert max(len(line) for line in chart) <= 100
    code, out = on_pty(w, "trend", "--since", "1h", extra_env={"NO_COLOR": "1"})
    assert code == 0 and out.split()[:2] == ["TIME", "RUNS"] and not BLOCKS & set(out)


def test_runs_follow_prints_new_runs_as_they_are_stored(busy: tuple[World, Daemon]) -> None:
    w, _ = busy
    follower = w.start(PATIENCE, "metrics", "runs", "--follow", "--json", "--limit", "1",
                       "--socket", w.socket)  # fmt: skip
    assert follower.stdout is not None
    printed: queue.Queue[str] = queue.Queue()
    threading.Thread(
        target=lambda: [printed.put(line) for line in follower.stdout], daemon=True
    ).start()
    try:
        first = json.loads(printed.get(timeout=15))
        r = w.rpr("count", "--times", "2", *w.daemon_flags("api:test:followed"), "--", "true")
        assert r.returncode == 0, r.stderr
        new = [json.loads(printed.get(timeout=15)) for _ in range(2)]
        assert [run["resource_id"] for run in new] == ["api:test:followed"] * 2
        assert all(run["id"] > first["id"] for run in new)
    finally:
        follower.send_signal(signal.SIGINT)
        assert follower.wait(10) == 130


def test_no_daemon_is_exit_1_naming_the_socket(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        for tool in (PATIENCE, RPR):
            r = metrics(w, "summary", tool=tool)
            assert r.returncode == 1
            assert f"metrics: no daemon answers on {w.socket}" in r.stderr
            assert "start one with patience-daemon" in r.stderr and r.stdout == ""


def test_no_data_is_an_empty_result(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            for form in ("summary", "tools", "usage", "runs", "trend"):
                for extra in ((), ("--json",)):
                    r = metrics(w, form, *extra)
                    assert (r.returncode, r.stdout) == (0, ""), (form, r.stderr)
                    assert "no data from" in r.stderr
        finally:
            daemon.ensure_stopped()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["summary", "--since", "yesterday"], '--since: "yesterday" is neither a duration'),
        (["summary", "--until", "@x"], '--until: "@x" is neither a duration'),
        (["trend", "--since", "1h", "--until", "2h"], "--until must be later than --since"),
        (["trend", "--step", "2m"], '--step: "2m" is not one of'),
        (["tools", "--tool", "curl"], '--tool: "curl" is not a tool (patience or rpr)'),
        (["runs", "--limit", "0"], "--limit:"),
        (["summary", "--follow"], "--follow goes with runs only"),
        (["summary", "extra"], "unexpected argument 'extra'"),
        (["sumary"], 'unknown form "sumary" (did you mean summary?)'),
        (["summary", "--resource", "x" * 300], "--resource: a resource pattern is 1 to 256"),
        (["summary", "--frobnicate"], "--frobnicate"),
    ],
)
def test_bad_options_exit_2_with_the_fix(tmp_path: Path, args: list[str], message: str) -> None:
    with world(tmp_path) as w:
        r = metrics(w, *args)
        assert r.returncode == 2 and message in r.stderr, r.stderr
        assert r.stderr.startswith("patience metrics: ")


def test_help_lists_the_forms(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        r = w.run(RPR, "metrics", "--help")
        assert r.returncode == 0 and r.stdout.startswith("usage: rpr metrics summary|tools")
        assert w.run(PATIENCE, "metrics").returncode == 2


def test_the_daemon_refuses_a_query_past_its_bounds(busy: tuple[World, Daemon]) -> None:
    w, daemon = busy
    r = metrics(w, "trend", "--since", "3d", "--step", "1m")
    assert r.returncode == 1
    assert "refused the query: invalid timeseries format: 3d at 1m steps is 432" in r.stderr
    assert "points, more than 1500: use a longer step or a shorter range" in r.stderr
    with daemon.raw() as raw:
        for line, message in (
            ('{"type":"timeseries","step":"2m"}', "Invalid enum value '2m' - at `$.step`"),
            ('{"type":"timeseries","resource":"' + "x" * 257 + '"}', "at `$.resource`"),
            ('{"type":"timeseries","start":100,"end":50}', "end (50) is not after start (100)"),
            ('{"type":"timeseries","start":0,"end":200000000}', "more than 1464d: ask for"),
            ('{"type":"timeseries","group_by":"host"}', "at `$.group_by`"),
            ('{"type":"timeseries","hist":true}', "unknown field `hist`"),
            ('{"type":"runs","limit":5000}', "Expected `int` <= 1000 - at `$.limit`"),
            ('{"type":"runs","start":100,"end":50}', "end is not after start"),
        ):
            reply = raw.ask(line)
            assert reply["type"] == "error" and message in str(reply["error"]), reply
        assert raw.ask('{"type":"ping"}')["type"] == "pong"
