"""`rpr` and `patience` under bad input and hang-ups, through the real executables.

Long waits (past the ~24.8 days poll() can take in one go), configuration files that are not
files (/dev/zero, a FIFO, a directory) or are far too large, digits that only look like
0-9, rate limits no limiter can hold, and SIGHUP from a closed terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools import PATIENCE, RPR, env, pid_alive, run

# --- waits longer than poll() can take ---------------------------------------------------


def _start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        list(argv), env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[str, str]:
    """Send `sig`, then collect the output (killing the tool if it does not stop)."""
    proc.send_signal(sig)
    try:
        return proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise


def _wait_for_line(proc: subprocess.Popen[str], stream: str, text: str) -> None:
    """Read `stream` ("stdout" or "stderr") line by line until one contains `text`."""
    pipe = getattr(proc, stream)
    seen = []
    for line in pipe:
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"{text!r} never appeared; {stream}: {''.join(seen)!r}")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
@pytest.mark.parametrize(
    "mode",
    [
        ["interval", "--every", "25d"],  # the schedule's wait
        ["rate-limit", "--rate", "1/30d"],  # the rate-limit gate's wait
    ],
)
def test_rpr_waits_weeks_between_runs_and_stops_on_a_signal(
    mode: list[str], sig: int, code: int
) -> None:
    proc = _start(RPR, *mode, "--times", "2", "--", "echo", "hi")
    _wait_for_line(proc, "stdout", "hi")
    time.sleep(1.0)
    assert proc.poll() is None, "rpr stopped while it should be waiting for the second run"
    _, err = _stop(proc, sig)
    assert proc.returncode == code, err
    assert "Traceback" not in err
    assert "1 succeeded" in err


def test_patience_waits_30_days_before_a_retry_and_stops_on_a_signal() -> None:
    proc = _start(PATIENCE, "fixed", "--delay", "30d", "--attempts", "2", "--", "false")
    _wait_for_line(proc, "stderr", "Retrying in 30d")
    time.sleep(1.0)
    assert proc.poll() is None, "patience stopped while it should be waiting to retry"
    _, err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert "Traceback" not in err
    assert "Interrupted while waiting" in err


SLOW_DONE = "sleep 0.2; echo done"


@pytest.mark.parametrize(
    "argv",
    [
        [PATIENCE, "fixed", "--timeout", "30d", "--", "sh", "-c", SLOW_DONE],
        [RPR, "count", "--times", "1", "--timeout", "30d", "--", "sh", "-c", SLOW_DONE],
    ],
    ids=["patience", "rpr"],
)
def test_a_timeout_of_30_days_lets_the_command_finish(argv: list[str]) -> None:
    r = run(*argv, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "done\n"
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("tool", ["rpr", "patience"])
def test_a_duration_past_100_years_is_refused(tool: str) -> None:
    """9...9s is infinite as a float: no wait or message can cope with it."""
    huge = "9" * 400 + "s"
    argv = (
        [RPR, "interval", "--every", huge, "--", "echo", "ran"]
        if tool == "rpr"
        else [PATIENCE, "fixed", "--delay", huge, "--", "echo", "ran"]
    )
    r = run(*argv, timeout=30)
    assert r.returncode == 2, r.stderr
    assert "is too long (at most 36500d)" in r.stderr
    assert r.stdout == ""


# --- configuration files that are not files ----------------------------------------------


def _isolated(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment that reads no file of the host."""
    for name in ("etc", "home", "work"):
        (tmp_path / name).mkdir(exist_ok=True)
    return env(
        PATIENCE_SYSTEM_CONFIG_DIR=str(tmp_path / "etc"),
        XDG_CONFIG_HOME=str(tmp_path / "home"),
        **extra,
    )


def _make(kind: str, path: Path) -> str:
    """Put a bad configuration file of `kind` at `path`; returns what the error must say."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
        return "a device, not a regular file"
    if kind == "fifo":
        os.mkfifo(path)
        return "a FIFO, not a regular file"
    if kind == "directory":
        path.mkdir()
        return "Is a directory"
    path.write_bytes(b"# " + b"x" * (2 << 20) + b"\n")  # 2 MiB of a valid TOML comment
    return "2.0 MiB, over the 1 MiB a configuration file may have"


KINDS = ["dev-zero", "fifo", "directory", "2mib"]
SOURCES = ["--config", "variable", "user", "project", "system"]


def _where(source: str, tool: str, tmp_path: Path) -> tuple[Path, list[str], dict[str, str]]:
    """Where a file of `source` lives, the global options naming it and extra variables."""
    if source == "--config":
        path = tmp_path / "given.toml"
        return path, ["--config", str(path)], {}
    if source == "variable":
        path = tmp_path / "named.toml"
        variable = "RPR_CONFIG_FILE" if tool == "rpr" else "PATIENCE_CONFIG_FILE"
        return path, [], {variable: str(path)}
    if source == "user":
        return tmp_path / "home" / "patience" / "config.toml", [], {}
    if source == "project":
        return tmp_path / "work" / ".patience.toml", [], {}
    return tmp_path / "etc" / "config.toml", [], {}


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("tool", ["rpr", "patience"])
def test_a_config_file_that_is_not_a_small_regular_file_is_refused(
    tmp_path: Path, tool: str, kind: str, source: str
) -> None:
    path, options, variables = _where(source, tool, tmp_path)
    problem = _make(kind, path)
    argv = (
        [RPR, *options, "count", "--times", "1", "--", "echo", "ran"]
        if tool == "rpr"
        else [PATIENCE, *options, "fixed", "--", "echo", "ran"]
    )
    start = time.monotonic()
    r = run(*argv, timeout=20, cwd=tmp_path / "work", env=_isolated(tmp_path, **variables))
    assert time.monotonic() - start < 10
    assert r.returncode == 2, r.stderr
    assert r.stdout == ""
    shown = path.name if source == "project" else str(path)  # found in the current directory
    assert f"{shown}: cannot read ({problem}" in r.stderr or (
        f'--config: cannot read "{shown}": {problem}' in r.stderr  # patience checks --config first
    ), r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_a_config_file_of_exactly_1_mib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "given.toml"
    body = b'[repeater]\ndefault_timeout = "5s"\n'
    path.write_bytes(body + b"#" * ((1 << 20) - len(body) - 1) + b"\n")
    r = run(RPR, "--config", str(path), "count", "--times", "1", "--", "echo", "ran",
            env=_isolated(tmp_path), cwd=tmp_path / "work")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ran\n"


# --- numbers are ASCII digits --------------------------------------------------------------

FOREIGN = [
    ([RPR, "count", "--times", "５"], '--times: "５" is not a whole number: "５" is not one'),
    ([RPR, "interval", "--every", "５s"], '--every: "５s" is not a duration: "５" is not one'),
    ([RPR, "interval", "--every", "1s", "--jitter", "５%"], '--jitter: "５%" is not a'),
    ([RPR, "rate-limit", "--rate", "５/s"], '--rate: "５/s" is not a rate: "５" is not one'),
    ([RPR, "rate-limit", "--rate", "5/٣s"], '--rate: "5/٣s" is not a rate: "٣" is not one'),
    ([RPR, "interval", "--every", "1s", "--until", "１７:３０"], '"１７:３０" is not a time: "１"'),
    ([PATIENCE, "fixed", "--attempts", "３"], '--attempts: "３" is not a whole number: "３"'),
    ([PATIENCE, "fixed", "--delay", "1.５s"], '--delay: "1.５s" is not a duration: "５"'),
    ([PATIENCE, "exp", "--multiplier", "２"], '--multiplier: "２" is not a number: "２"'),
    ([PATIENCE, "fixed", "--retry-on", "７"], '--retry-on: "７" is not an exit code'),
]


@pytest.mark.parametrize(("argv", "message"), FOREIGN, ids=[m for _, m in FOREIGN])
def test_digits_other_than_ascii_are_refused(argv: list[str], message: str) -> None:
    r = run(*argv, "--", "echo", "ran", timeout=30)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    if "not one" in message:
        assert "is not one of the digits 0-9 (type it in ASCII)" in r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "PATIENCE_ATTEMPTS",
            "３",
            '"３" is not a whole number from 1 to 1000: "３" is not one of the digits 0-9',
        ),
        ("PATIENCE_TIMEOUT", "５s", '"５s" is not a duration: "５" is not one of the digits'),
    ],
)
def test_digits_other_than_ascii_in_variables_are_refused(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    r = run(PATIENCE, "fixed", "--", "echo", "ran",
            env=_isolated(tmp_path, **{variable: value}), cwd=tmp_path / "work")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert variable in r.stderr and message in r.stderr
    assert r.stdout == ""


# --- rate limits a limiter can hold --------------------------------------------------------

BAD_RATES = [
    (
        [RPR, "rate-limit", "--rate", "100000000000000000000000/1s"],
        "--rate: rate limit 100000000000000000000000 is too large (at most 1099511627776, 2^40)",
    ),
    ([RPR, "rate-limit", "--rate", "5/1ns"], "--rate: rate-limit window 1ns is under 1ms"),
    ([RPR, "rate-limit", "--rate", "5/3651d"], "--rate: rate-limit window 3651d is too long"),
    (
        [PATIENCE, "dio", "--rate-limit", "100000000000000000000", "-o", "0"],
        "diophantine: --rate-limit/--window: rate limit 100000000000000000000 is too large",
    ),
    (
        [PATIENCE, "dio", "--rate-limit", "5", "--window", "10us", "-o", "0"],
        "diophantine: --rate-limit/--window: rate-limit window 10us is under 1ms",
    ),
    (
        [PATIENCE, "dio", "--rate-limit", "5", "--window", "3651d", "-o", "0"],
        "--rate-limit/--window: rate-limit window 3651d is too long (at most 3650d)",
    ),
]


@pytest.mark.parametrize(("argv", "message"), BAD_RATES, ids=[m for _, m in BAD_RATES])
def test_a_rate_no_limiter_can_hold_is_a_usage_error(argv: list[str], message: str) -> None:
    r = run(*argv, "--", "echo", "ran", timeout=30)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_a_configured_window_under_1ms_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "given.toml"
    path.write_text('[rate_limiting.resources]\napi = { limit = 5, window = "500us" }\n')
    r = run(RPR, "--config", str(path), "count", "--times", "1", "--", "echo", "ran",
            env=_isolated(tmp_path), cwd=tmp_path / "work")  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert (
        f'{path}: rate_limiting.resources.api.window: expected a duration of at least 1ms, got "500us"'
        in r.stderr
    )


# --- SIGHUP: the terminal closed ------------------------------------------------------------


def _tagged(tag: str, exact: bool = False) -> list[int]:
    """Live processes with `tag` in their command line (`exact`: the sleeps `sleep TAG`)."""
    wanted = f"sleep\0{tag}\0".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            hit = cmdline == wanted if exact else tag.encode() in cmdline
            if hit and pid_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


@pytest.fixture
def tag() -> Iterator[str]:
    """A marker for the test's sleeps (`sleep 1000.<pid><n>`); any survivor is killed after."""
    marker = f"1000.{os.getpid()}{time.monotonic_ns() % 100000}"
    yield marker
    for pid in _tagged(marker):
        os.kill(pid, signal.SIGKILL)


def _tree_command(tag: str) -> list[str]:
    """A command whose process tree has a background and a foreground grandchild."""
    return ["sh", "-c", f"sleep {tag} & sleep {tag}; wait"]


HUNG_UP = {
    "rpr": [RPR, "interval", "--every", "1s", "--"],
    "patience": [PATIENCE, "fixed", "--"],
    "rpr-patience": [RPR, "interval", "--every", "1s", "--", PATIENCE, "fixed", "--"],
}


@pytest.mark.parametrize("tool", list(HUNG_UP))
def test_sighup_reaches_the_whole_tree_and_exits_129(tool: str, tag: str) -> None:
    proc = _start(*HUNG_UP[tool], *_tree_command(tag))
    deadline = time.monotonic() + 15
    while len(_tagged(tag, exact=True)) < 2:
        assert time.monotonic() < deadline, "the command's sleeps never started"
        time.sleep(0.05)
    time.sleep(0.1)
    _, err = _stop(proc, signal.SIGHUP)
    assert proc.returncode == 129, err
    assert "Traceback" not in err
    deadline = time.monotonic() + 10
    while _tagged(tag) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _tagged(tag) == [], "part of the command's process tree survived"


def test_under_nohup_sighup_is_still_ignored(tag: str) -> None:
    """nohup means "keep going when the terminal closes": the tool leaves SIGHUP ignored."""
    proc = _start("nohup", RPR, "interval", "--every", "1s", "--", "sleep", tag)
    deadline = time.monotonic() + 15
    while not _tagged(tag, exact=True):
        assert time.monotonic() < deadline, "the command never started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert proc.poll() is None, "rpr under nohup died of SIGHUP"
    _, err = _stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err
    assert not any(pid_alive(pid) for pid in _tagged(tag))
