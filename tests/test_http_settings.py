"""The HTTP side's settings and counters, as pure logic: the listen address, the Host check
that stops DNS rebinding, the token rule, and the bounded counters behind /metrics."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.daemon.http.listen import (
    HttpSettings,
    SettingsError,
    host_allowed,
    parse_listen,
)
from patience.daemon.protocol import ExecutionMetrics
from patience.daemon.totals import DURATION_BUCKETS, OTHER, Totals


@pytest.mark.parametrize(
    ("text", "host", "port", "loopback"),
    [
        ("127.0.0.1:9464", "127.0.0.1", 9464, True),
        ("localhost:80", "127.0.0.1", 80, True),
        ("[::1]:9464", "::1", 9464, True),
        ("0.0.0.0:9464", "0.0.0.0", 9464, False),
        ("[::]:0", "::", 0, False),
        ("192.168.1.5:65535", "192.168.1.5", 65535, False),
    ],
)
def test_listen_addresses(text: str, host: str, port: int, loopback: bool) -> None:
    listen = parse_listen(text)
    assert (listen.host, listen.port, listen.loopback) == (host, port, loopback)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("9464", "is not ADDR:PORT"),
        (":9464", "is not ADDR:PORT"),
        ("127.0.0.1", "is not ADDR:PORT"),
        ("example.com:80", "example.com is not an IP address"),
        ("::1:9464", "put an IPv6 address in brackets"),
        ("127.0.0.1:65536", "the port must be a number from 0 to 65535"),
        ("127.0.0.1:http", "the port must be a number"),
        ("127.0.0.1:٩٤", "the port must be a number"),
    ],
)
def test_bad_listen_addresses_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words) as caught:
        parse_listen(text)
    assert "127.0.0.1:9464" in str(caught.value)  # the form to use


def test_a_non_loopback_address_needs_a_token() -> None:
    with pytest.raises(SettingsError, match=r"not a loopback address: set daemon\.http_token"):
        HttpSettings(parse_listen("0.0.0.0:9464"), None, 100)
    assert HttpSettings(parse_listen("0.0.0.0:9464"), "x" * 32, 100).token == "x" * 32
    assert HttpSettings(parse_listen("127.0.0.1:9464"), None, 100).token is None


@pytest.mark.parametrize("token", ["short", "x" * 15, "tab\there-is-long-enough"])
def test_a_weak_token_is_refused(token: str) -> None:
    with pytest.raises(SettingsError, match=r"at least 16 printable characters.*openssl rand"):
        HttpSettings(parse_listen("127.0.0.1:1"), token, 100)


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1:9464",
        "127.0.0.1",
        "localhost:9464",
        "LOCALHOST",
        "[::1]:9464",
        "[::1]",
        "10.1.2.3:80",
        "dash.internal:9464",
    ],
)
def test_hosts_we_answer(host: str) -> None:
    assert host_allowed(host, frozenset({"dash.internal"}))


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example:9464",  # a rebound name: the page's own
        "localhost.evil.example",
        "127.0.0.1.nip.io:9464",
        "[::1",
        "[::1]x",
        "[evil]:80",
        "::1",
        "localhost:http",
        "dash.internal:9464",  # not listed this time
    ],
)
def test_hosts_we_refuse(host: str | None) -> None:
    assert not host_allowed(host, frozenset())


@given(st.from_regex(r"[A-Za-z][A-Za-z0-9-]{0,20}(\.[A-Za-z0-9-]{1,10}){0,3}", fullmatch=True))
def test_a_name_is_accepted_only_when_listed(name: str) -> None:
    """Any name other than localhost is a possible rebinding, unless the operator listed it."""
    if name.lower() == "localhost":
        return
    assert not host_allowed(f"{name}:9464", frozenset())
    assert not host_allowed(name, frozenset({"other.example"}))
    assert host_allowed(f"{name}:9464", frozenset({name.lower()}))


def _record(resource: str, tool: str = "repeater", success: bool = True, duration: float = 0.2):
    return ExecutionMetrics(
        tool=tool,  # type: ignore[arg-type]
        resource_id=resource,
        start_time=1.0,
        duration=duration,
        success=success,
    )


def test_totals_count_executions_and_fold_resources_past_the_cap() -> None:
    totals = Totals(max_resources=2)
    totals.add_executions([_record("a"), _record("a", success=False), _record("b", "patience")])
    totals.add_executions([_record("c"), _record("d", duration=7200.0), _record("a")])
    assert totals.executions == {
        ("repeater", "a", True): 2,
        ("repeater", "a", False): 1,
        ("patience", "b", True): 1,
        ("repeater", OTHER, True): 2,
    }
    other = totals.durations[("repeater", OTHER)]
    assert other.count == 2 and other.total == pytest.approx(7200.2)
    assert other.cumulative()[-2] == 1  # 7200 s is above the last bound, in +Inf only
    assert other.cumulative()[-1] == 2


def test_a_resource_keeps_its_label_for_the_daemons_life() -> None:
    totals = Totals(max_resources=1)
    totals.add_usage({("late", "repeater"): [1, 0, 0, 0.0]})
    totals.add_usage({("first", "repeater"): [3, 1, 2, 0.5], ("late", "repeater"): [2, 0, 0, 0.0]})
    assert totals.usage[("late", "repeater")].granted == 3
    usage = totals.usage[(OTHER, "repeater")]
    assert (usage.granted, usage.refused, usage.waited, usage.wait_seconds) == (3, 1, 2, 0.5)


@given(st.lists(st.floats(min_value=0, max_value=1e6), max_size=50))
def test_histogram_buckets_are_cumulative_and_complete(durations: list[float]) -> None:
    totals = Totals(max_resources=1)
    totals.add_executions([_record("a", duration=d) for d in durations])
    if not durations:
        return
    histogram = totals.durations[("repeater", "a")]
    counts = histogram.cumulative()
    assert counts == sorted(counts) and counts[-1] == len(durations)
    for bound, count in zip(DURATION_BUCKETS, counts, strict=False):
        assert count == sum(1 for d in durations if d <= bound)
