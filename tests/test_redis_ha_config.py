"""The configuration of Redis Sentinel and Redis Cluster (docs/multi-host.md, "High
availability"): the `redis+sentinel://` grammar read back exactly, and every malformed URL or
impossible combination refused with the key and the fix, by `patience config validate` and by
a daemon that will not start (status 2)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon_support import isolated_env, run_daemon, short_dir
from patience.daemon.redis_connect import Sentinels, check_url, sentinels
from tools import PATIENCE


def test_a_sentinel_url_names_its_sentinels_master_database_and_credentials() -> None:
    assert sentinels("redis+sentinel://a:26379,b.example:26380/main") == Sentinels(
        [("a", 26379), ("b.example", 26380)], "main", 0, None, None, False
    )
    assert sentinels("redis+sentinel://:s%40cret@10.0.0.1:1,[::1]:2/m%2F1/3") == Sentinels(
        [("10.0.0.1", 1), ("::1", 2)], "m/1", 3, None, "s@cret", False
    )
    assert sentinels("rediss+sentinel://app:pw@h:5/m/") == Sentinels(
        [("h", 5)], "m", 0, "app", "pw", True
    )


names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
hosts = st.lists(
    st.tuples(st.from_regex(r"[a-z0-9][a-z0-9.-]{0,15}", fullmatch=True), st.integers(1, 65535)),
    min_size=1,
    max_size=5,
)


@given(hosts, names, st.integers(0, 15), st.none() | names, st.booleans())
def test_any_sentinel_url_written_by_the_grammar_reads_back(
    listed: list[tuple[str, int]], master: str, db: int, password: str | None, tls: bool
) -> None:
    auth = f":{quote(password, safe='')}@" if password is not None else ""
    netloc = ",".join(f"{host}:{port}" for host, port in listed)
    url = f"redis{'s' if tls else ''}+sentinel://{auth}{netloc}/{quote(master, safe='')}/{db}"
    check_url(url)
    assert sentinels(url) == Sentinels(listed, master, db, None, password, tls)


BAD_URLS = {
    "redis+sentinel:///main": "the Sentinel URL names no sentinel: write redis+sentinel://",
    "redis+sentinel://h:26379": "the Sentinel URL names no master: add the name the sentinels",
    "redis+sentinel://h:26379/": "the Sentinel URL names no master",
    "redis+sentinel://h/main": "sentinel 'h' has no port: write HOST:PORT (often HOST:26379)",
    "redis+sentinel://h:0/main": "sentinel 'h:0' has a bad port: write a number from 1 to 65535",
    "redis+sentinel://h:x/main": "sentinel 'h:x' has a bad port",
    "redis+sentinel://h:70000/main": "sentinel 'h:70000' has a bad port",
    "redis+sentinel://h:1,,h:2/main": "sentinel '' has no port",
    "redis+sentinel://:1/main": "sentinel ':1' has no host before its port",
    "redis+sentinel://h:1/main/zero": "database (after the master's name) must be a number",
    "redis+sentinel://h:1/main?ssl=1": "a Sentinel URL takes no ?options or #fragment",
    "rediss+sentinel://h:1": "the Sentinel URL names no master",
    "http://h:1/main": "expected a Redis URL (redis://HOST:6379/0, rediss://... with TLS",
    "sentinel://:pw@h:1/main": "got sentinel://...",
    # Numbers of 10^9 and beyond, and a list of a thousand sentinels: refused while read.
    "redis+sentinel://h:1000000000/main": "sentinel 'h:1000000000' has a bad port",
    "redis+sentinel://h:" + "9" * 5000 + "/main": "sentinel 'h:99999999999999999999999",
    "redis+sentinel://h:1/main/1000000000": "must be a number below 10^9, got '1000000000'",
    "redis+sentinel://" + ",".join(f"h{i}:1" for i in range(1000)) + "/main": (
        "names more than 16 sentinels: name a few of them"
    ),
}


@pytest.mark.parametrize(("url", "message"), BAD_URLS.items())
def test_config_validate_names_what_is_wrong_with_a_redis_url(
    tmp_path: Path, url: str, message: str
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'[daemon]\nbackend = "redis"\nredis_url = "{url}"\n')
    result = subprocess.run(
        [PATIENCE, "config", "validate", str(path)],
        capture_output=True,
        text=True,
        env=isolated_env(tmp_path),
        timeout=30,
        check=False,
    )
    assert result.returncode == 2, result
    assert result.stderr.startswith(f"patience: {path}: daemon.redis_url: "), result.stderr
    assert message in result.stderr, result.stderr
    assert "pw" not in result.stderr  # a password is never echoed
    assert len(result.stderr.splitlines()) == 1, result.stderr


START_ERRORS = {
    'redis_url = "unix:///run/redis.sock"\nredis_cluster = true': (
        "daemon.redis_url: redis_cluster = true needs a redis:// or rediss:// URL of one cluster"
        " node, such as redis://HOST:7000 (a cluster is reached over TCP, and it is not"
        " Sentinel's): got unix://"
    ),
    'redis_url = "redis+sentinel://h:26379/main"\nredis_cluster = true': (
        "redis_cluster = true needs a redis:// or rediss:// URL of one cluster node"
    ),
    'redis_url = "redis://127.0.0.1:7000/2"\nredis_cluster = true': (
        "redis_cluster = true: a cluster has only database 0: remove the database from the URL"
    ),
    'redis_url = "redis://h:1"\nredis_cluster = "yes"': (
        'daemon.redis_cluster: expected true or false, got "yes"'
    ),
    'redis_url = "redis+sentinel://h:26379"': "daemon.redis_url: the Sentinel URL names no master",
    'redis_url = "rediss+sentinel://h:26379/m"\nredis_cluster = true': (
        "redis_cluster = true needs a redis:// or rediss:// URL of one cluster node"
    ),
}


def test_the_daemon_refuses_to_start_on_an_impossible_redis_set_up() -> None:
    with short_dir() as directory:
        for number, (keys, message) in enumerate(START_ERRORS.items()):
            path = directory / f"c{number}.toml"
            path.write_text(f'[daemon]\nbackend = "redis"\n{keys}\n')
            result = run_daemon(
                directory, "--socket", str(directory / f"d{number}.sock"), "--config", str(path)
            )
            assert result.returncode == 2, result.stderr
            assert message in result.stderr, result.stderr
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
