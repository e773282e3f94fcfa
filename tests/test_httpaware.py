"""Server retry hints from real-world shaped output: GitHub, Stripe, Slack, Discord style."""

from __future__ import annotations

import math
import subprocess
import sys
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.httpaware import hint_delay, parse_hint

NOW = 1_724_148_000.0  # 2024-08-20 10:00:00 UTC

GITHUB_PRIMARY = (
    "HTTP/2 403\r\n"
    "date: Tue, 20 Aug 2024 10:00:00 GMT\r\n"
    "content-type: application/json; charset=utf-8\r\n"
    "x-github-media-type: github.v3; format=json\r\n"
    "x-ratelimit-limit: 60\r\n"
    "x-ratelimit-remaining: 0\r\n"
    "x-ratelimit-reset: 1724148042\r\n"
    "x-ratelimit-resource: core\r\n"
    "x-ratelimit-used: 60\r\n"
    "\r\n"
    '{"message":"API rate limit exceeded for 203.0.113.7. (But here\'s the good news: '
    'Authenticated requests get a higher rate limit.)","documentation_url":'
    '"https://docs.github.com/rest/overview/resources-in-the-rest-api#rate-limiting"}\n'
)

GITHUB_SECONDARY = (
    "HTTP/2 403\r\n"
    "retry-after: 60\r\n"
    "x-ratelimit-limit: 5000\r\n"
    "x-ratelimit-remaining: 4987\r\n"
    "x-ratelimit-reset: 1724150000\r\n"
    "\r\n"
    '{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before '
    'you try again.","documentation_url":"https://docs.github.com/rest"}\n'
)

GITHUB_SERVER_ERROR = (
    "HTTP/2 502\r\n"
    "x-ratelimit-limit: 5000\r\n"
    "x-ratelimit-remaining: 4986\r\n"
    "x-ratelimit-reset: 1724151000\r\n"
    "\r\n"
    '{"message":"Server Error"}\n'
)

STRIPE_RATE_LIMIT = (
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Server: nginx\r\n"
    "Content-Type: application/json\r\n"
    "Request-Id: req_8Kz2XbG0qFhQ1d\r\n"
    "Stripe-Version: 2024-06-20\r\n"
    "Stripe-Should-Retry: true\r\n"
    "\r\n"
    "{\n"
    '  "error": {\n'
    '    "code": "rate_limit",\n'
    '    "message": "Too many requests hit the API too quickly. We recommend an exponential '
    'backoff of your requests.",\n'
    '    "type": "invalid_request_error"\n'
    "  }\n"
    "}\n"
)

SLACK_VERBOSE = (
    "*   Trying 52.22.1.1:443...\n"
    "* Connected to slack.com (52.22.1.1) port 443\n"
    "> POST /api/chat.postMessage HTTP/2\n"
    "> Host: slack.com\n"
    ">\n"
    "< HTTP/2 429\n"
    "< content-type: application/json; charset=utf-8\n"
    "< retry-after: 30\n"
    "< x-slack-req-id: 7d1a4b0c2e\n"
    "<\n"
    '{"ok":false,"error":"ratelimited"}\n'
)


def test_github_primary_limit_waits_for_the_reset():
    assert parse_hint(GITHUB_PRIMARY, NOW) == 42.0


def test_github_secondary_limit_uses_retry_after_not_the_reset():
    assert parse_hint(GITHUB_SECONDARY, NOW) == 60.0


def test_github_reset_is_ignored_while_requests_remain():
    assert parse_hint(GITHUB_SERVER_ERROR, NOW) is None


def test_stripe_rate_limit_without_a_hint():
    assert parse_hint(STRIPE_RATE_LIMIT, NOW) is None


def test_stripe_style_nested_json_hint():
    body = '{"error": {"type": "rate_limit_error", "code": "rate_limit", "retry_after": 3}}'
    assert parse_hint(body, NOW) == 3.0


def test_slack_retry_after_in_curl_verbose_output():
    assert parse_hint(SLACK_VERBOSE, NOW) == 30.0


def test_discord_fractional_json_seconds():
    body = '{"message": "You are being rate limited.", "retry_after": 64.57, "global": false}'
    assert parse_hint(body, NOW) == 64.57


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Retry-After: 120", 120.0),
        ("retry-after:0.25", 0.25),
        ("RETRY-AFTER:   7  \r\n", 7.0),
        ("X-RateLimit-Retry-After: 12", 12.0),
        ("X-RateLimit-Retry-After: 1724148010", 10.0),
        ("X-RateLimit-Reset: 1724148100", 100.0),
        ("X-RateLimit-Reset: 1724140000", 0.0),  # already past: retry now
        ("X-RateLimit-Reset: 15", 15.0),  # too small for a Unix time: seconds
        ("X-RateLimit-Remaining: 0\nX-RateLimit-Reset: 1724148005.5", 5.5),
    ],
)
def test_header_forms(text: str, expected: float):
    assert parse_hint(text, NOW) == pytest.approx(expected)


@pytest.mark.parametrize(
    "date",
    [
        "Tue, 20 Aug 2024 10:02:00 GMT",  # IMF-fixdate
        "Tuesday, 20-Aug-24 10:02:00 GMT",  # RFC 850
        "Tue Aug 20 10:02:00 2024",  # asctime
    ],
)
def test_retry_after_as_an_http_date(date: str):
    assert parse_hint(f"Retry-After: {date}\r\n", NOW) == 120.0


def test_retry_after_date_in_the_past_means_now():
    assert parse_hint("Retry-After: Wed, 21 Oct 2015 07:28:00 GMT", NOW) == 0.0


def test_http_date_against_the_real_clock():
    when = time.time() + 90
    date = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(when))
    assert parse_hint(f"Retry-After: {date}", time.time()) == pytest.approx(90, abs=2)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ('{"retry_after": 5}', 5.0),
        ('{"retry_after_seconds": "12"}', 12.0),
        ('{"retryAfter": 2.5}', 2.5),
        ('{"error":{"code":429,"details":{"retryAfterSeconds":"8"}}}', 8.0),
        ('{"status":"throttled","retry_in":4}', 4.0),
        ('[{"errors":[{"message":"slow down","extensions":{"retryAfter":9}}]}]', 9.0),
        ('{"error":{"retry_after":3}}', 3.0),
    ],
)
def test_json_keys_at_any_depth(body: str, expected: float):
    assert parse_hint(body, NOW) == expected


def test_json_after_log_lines_on_stderr():
    text = "curl: (22) The requested URL returned error: 429\n" + 'body: {"retry_after": 6}\n'
    assert parse_hint(text, NOW) == 6.0


def test_shallow_key_wins_over_a_nested_one():
    assert parse_hint('{"detail":{"retry_after":9},"retry_after":2}', NOW) == 2.0


def test_extra_fields_are_json_keys_too():
    body = '{"error":{"wait_seconds": 7}}'
    assert parse_hint(body, NOW) is None
    assert parse_hint(body, NOW, extra_fields=("wait_seconds",)) == 7.0


def test_header_wins_over_json():
    text = 'Retry-After: 4\r\n\r\n{"retry_after": 40}'
    assert parse_hint(text, NOW) == 4.0
    assert parse_hint(text, NOW, parse_headers=False) == 40.0
    assert parse_hint(text, NOW, parse_json=False) == 4.0
    assert parse_hint('{"retry_after": 40}', NOW, parse_json=False) is None
    assert parse_hint(GITHUB_PRIMARY, NOW, parse_headers=False) is None


def test_last_response_wins_after_redirects():
    text = "HTTP/1.1 429\r\nRetry-After: 100\r\n\r\nHTTP/1.1 429\r\nRetry-After: 3\r\n\r\n"
    assert parse_hint(text, NOW) == 3.0


@pytest.mark.parametrize(
    "text",
    [
        "",
        "everything is fine",
        "Retry-After: soon",
        "Retry-After: -5",
        "Retry-After: nan",
        "Retry-After: inf",
        '{"retry_after": -1}',
        '{"retry_after": true}',
        '{"retry_after": "later"}',
        '{"retry_after": null}',
        '{"retry_after": {"seconds": 5}}',
        '{"retry_after": 5',  # truncated
        "{" * 5000,
        '{"a":' * 3000 + "1" + "}" * 3000,
        "the header Retry-After: 5 is not at a line start",
    ],
)
def test_no_hint(text: str):
    assert parse_hint(text, NOW) is None


def test_a_bad_header_value_falls_back_to_json():
    assert parse_hint('Retry-After: soon\n{"retry_after": 2}', NOW) == 2.0


def test_deeply_nested_garbage_is_fast():
    text = ('{"a":[' * 2000)[:10240]
    started = time.perf_counter()
    assert parse_hint(text, NOW) is None
    assert time.perf_counter() - started < 2.0


@given(st.text(max_size=400), st.floats(0, 2e9))
def test_any_text_gives_none_or_a_finite_non_negative_hint(text: str, now: float):
    hint = parse_hint(text, now)
    assert hint is None or (math.isfinite(hint) and hint >= 0)


@given(st.floats(0, 1e6, allow_nan=False))
def test_numeric_retry_after_round_trips(seconds: float):
    assert parse_hint(f"Retry-After: {seconds!r}", NOW) == seconds


def test_hint_delay_clamps_the_hint_or_falls_back():
    assert hint_delay(None, 2.0, max_delay=10.0) == 2.0
    assert hint_delay(30.0, 2.0, max_delay=10.0) == 10.0
    assert hint_delay(0.0, 2.0, max_delay=10.0, min_delay=1.0) == 1.0
    assert hint_delay(5.0, 2.0, max_delay=10.0) == 5.0


def test_importing_httpaware_does_not_import_re_or_json():
    code = "import sys, patience.httpaware; print('re' in sys.modules, 'json' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"
