"""The tools' side of throttle feedback, with the real executables and a real daemon
(docs/adaptive-limits.md): each signal a run's output or exit can carry reaches the daemon
(429 with its Retry-After as the pause, --throttle-pattern, --throttle-exit, the resource's
configured throttle_exit), the output passes through byte for byte, bad options are named,
predictive waits are said on stderr, and the learned limit shows in `patience-daemon status`
and in /metrics."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from daemon_support import Daemon
from http_support import http_daemon, samples, value
from integration_support import resource_states, world
from tools import DAEMON, RPR

HEAD_429 = "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0\r\n\r\n"


def learned(daemon: Daemon, resource: str) -> dict[str, object]:
    [state] = resource_states(daemon, resource)
    limit = state["rate_limit"]
    assert isinstance(limit, dict) and isinstance(limit["learned"], dict), state
    return limit["learned"]


def test_a_429_in_rpr_output_pauses_and_teaches_the_daemon(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        daemon = w.daemon().start()
        try:
            done = subprocess.run(
                [RPR, "count", "--times", "1", "--rate", "10/1s", *w.daemon_flags("api:t:429"),
                 "--", "printf", HEAD_429],
                capture_output=True, env=w.env, timeout=60, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert done.stdout == HEAD_429.encode()  # passed through byte for byte
            state = learned(daemon, "api:t:429")
            assert state["throttles"] == 1 and state["declared"] == 10
            paused = state["paused_until"]
            assert isinstance(paused, float) and 1.5 < paused - time.time() <= 3.0
        finally:
            daemon.ensure_stopped()


def test_pattern_and_exit_status_signals_from_both_tools(tmp_path: Path) -> None:
    config = '[rate_limiting.resources]\n"api:t:conf" = { throttle_exit = 75 }\n'
    with world(tmp_path) as w:
        daemon = w.daemon(config).start()
        (Path(w.home) / ".patience.toml").write_text(config)  # the tools read it too
        try:
            pattern = w.patience(
                "fixed", "--attempts", "1", "--throttle-pattern", "slow(ly)? down",
                *w.daemon_flags("api:t:pattern"), "--", "echo", "please slow down",
            )  # fmt: skip
            assert pattern.stdout == "please slow down\n"
            exit_code = w.rpr(
                "count", "--times", "2", "--throttle-exit", "22",
                *w.daemon_flags("api:t:exit"), "--", "sh", "-c", "exit 22",
            )  # fmt: skip
            configured = w.patience(
                "fixed", "--attempts", "1", *w.daemon_flags("api:t:conf"), "--", "sh", "-c",
                "exit 75",
            )  # fmt: skip
            assert exit_code.returncode == 1 and configured.returncode == 75, configured.stderr
            assert learned(daemon, "api:t:pattern")["throttles"] == 1
            assert learned(daemon, "api:t:exit")["throttles"] == 2
            assert learned(daemon, "api:t:conf")["throttles"] == 1
            # an ordinary failure is no throttle signal
            w.rpr("count", "--times", "1", *w.daemon_flags("api:t:none"), "--", "false")
            [state] = resource_states(daemon, "api:t:none")
            assert state["rate_limit"] is None
        finally:
            daemon.ensure_stopped()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--throttle-exit", "0"), "--throttle-exit: 0 is not an exit status from 1 to 255"),
        (("--throttle-exit", "x"), "--throttle-exit:"),
        (("--throttle-pattern", "(x"), '--throttle-pattern: invalid regular expression "(x"'),
    ],
)
def test_bad_throttle_options_are_usage_errors(
    tmp_path: Path, args: tuple[str, str], error: str
) -> None:
    with world(tmp_path) as w:
        for run in (w.rpr("count", "--times", "1", *args, "--", "true"),
                    w.patience("fixed", *args, "--", "true")):  # fmt: skip
            assert run.returncode == 2 and error in run.stderr, run.stderr


def test_predictive_waits_are_said_once_per_wait(tmp_path: Path) -> None:
    config = '[rate_limiting.resources]\n"api:t:slow" = { limit = 1, window = "2s" }\n'
    with world(tmp_path) as w:
        daemon = w.daemon(config).start()
        try:
            verbose = w.rpr(
                "count", "--times", "2", "--verbose", *w.daemon_flags("api:t:slow"), "--", "true"
            )
            said = [line for line in verbose.stderr.splitlines() if "waiting ~" in line]
            assert len(said) == 1, verbose.stderr  # the second run's wait, said once
            assert said[0].startswith("rpr: waiting ~") and said[0].endswith("s for api:t:slow")
            assert 1.0 <= float(said[0].split("~")[1].split("s")[0]) <= 2.0
            # a wait the daemon foresees: another client holds the only token
            with daemon.client("patience", "holder") as holder:
                assert holder.acquire("api:t:slow", max_wait=3.0).granted
                other = w.rpr(
                    "count", "--times", "1", "--progress", *w.daemon_flags("api:t:slow"),
                    "--", "true",
                )  # fmt: skip
            assert "s for api:t:slow (0 ahead)" in other.stderr, other.stderr
            quiet = w.rpr("count", "--times", "2", *w.daemon_flags("api:t:slow"), "--", "true")
            assert "waiting ~" not in quiet.stderr  # only with --verbose or --progress
            retried = w.patience(
                "fixed", "--attempts", "2", "--delay", "0s", *w.daemon_flags("api:t:slow"),
                "--", "false",
            )  # fmt: skip
            assert "patience: waiting ~" in retried.stderr, retried.stderr
        finally:
            daemon.ensure_stopped()


def test_the_learned_limit_in_status_and_metrics(tmp_path: Path) -> None:
    with http_daemon(tmp_path) as d:
        w = d.world
        for _ in range(2):
            w.rpr(
                "count", "--times", "3", "--rate", "50/1s", *w.daemon_flags("api:t:shown"),
                "--", "printf", "HTTP/2 429\r\n\r\n",
            )  # fmt: skip
        status = w.run(DAEMON, "status", "--socket", w.socket)
        line = next(x for x in status.stdout.splitlines() if "api:t:shown" in x)
        assert "learned:client:" in line and "[learned from" in line and "declared 50" in line
        found = samples(d)
        assert (
            value(found, "patience_resource_configured_limit_tokens", resource="api:t:shown") == 50
        )
        assert (
            1 <= value(found, "patience_resource_learned_limit_tokens", resource="api:t:shown") < 50
        )
