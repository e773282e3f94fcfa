"""Every bad value a user can write gets one line naming the file, the key and what is
expected; broken files name the file and the problem; unknown keys are warnings naming file
and key. Also the TOML writer and resource pattern matching used by show and the daemon."""

from __future__ import annotations

import fnmatch
import os
import tomllib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from patience.config import Config, ConfigError, load
from patience.config.resources import ResourceLimit, find_limit, glob_match
from patience.config.toml_text import key as toml_key
from patience.config.toml_text import value as toml_value
from patience.settings import Limit


def load_file(tmp_path: Path, text: str, name: str = "c.toml") -> tuple[str, Config]:
    """Load `text` as the explicit file of an otherwise empty machine."""
    path = tmp_path / name
    path.write_text(text)
    empty = tmp_path / "empty"
    empty.mkdir(exist_ok=True)
    config = load(
        config_file=str(path), environ={"HOME": str(empty)}, cwd=str(empty), system_dir=str(empty)
    )
    return str(path), config


def error_of(tmp_path: Path, text: str, name: str = "c.toml") -> tuple[str, str]:
    path = tmp_path / name
    with pytest.raises(ConfigError) as err:
        load_file(tmp_path, text, name)
    message = str(err.value)
    assert "\n" not in message
    return str(path), message


BAD_VALUES = [
    # (section line, key = value, what the message must say after "FILE: KEY: ")
    (
        "[patience]",
        'attempts = "three"',
        "patience.attempts",
        'expected a whole number from 1 to 1000, got "three"',
    ),
    (
        "[patience]",
        "attempts = 0",
        "patience.attempts",
        "expected a whole number from 1 to 1000, got 0",
    ),
    (
        "[patience]",
        "attempts = 1001",
        "patience.attempts",
        "expected a whole number from 1 to 1000, got 1001",
    ),
    (
        "[patience]",
        "attempts = 2.5",
        "patience.attempts",
        "expected a whole number from 1 to 1000, got 2.5",
    ),
    (
        "[patience]",
        "attempts = true",
        "patience.attempts",
        "expected a whole number from 1 to 1000, got true",
    ),
    (
        "[patience]",
        "max_attempts = -1",
        "patience.max_attempts",
        "expected a whole number from 1 to 1000, got -1",
    ),
    (
        "[patience]",
        'timeout = "5"',
        "patience.timeout",
        'expected a duration: "5" has no unit (try 5s)',
    ),
    (
        "[patience]",
        'timeout = "soon"',
        "patience.timeout",
        'expected a duration: "soon" is not a duration (try 5s, 500ms or 1m30s)',
    ),
    (
        "[patience]",
        'timeout = "-5s"',
        "patience.timeout",
        'expected a duration: "-5s" is negative (durations are 0 or more)',
    ),
    (
        "[patience]",
        'timeout = "5y"',
        "patience.timeout",
        'expected a duration: "5y" has an unknown unit "y" (use ns, us, ms, s, m, h or d)',
    ),
    (
        "[patience]",
        "timeout = 30",
        "patience.timeout",
        'expected a duration such as "30s" or "1m30s", got 30',
    ),
    (
        "[patience]",
        'daemon_timeout = "0s"',
        "patience.daemon_timeout",
        'expected a duration greater than 0, such as "30s", got "0s"',
    ),
    (
        "[patience]",
        "daemon_timeout = 0",
        "patience.daemon_timeout",
        'expected a duration greater than 0, such as "30s", got 0',
    ),
    (
        "[patience]",
        'case_insensitive = "yes"',
        "patience.case_insensitive",
        'expected true or false, got "yes"',
    ),
    (
        "[patience]",
        "daemon_enabled = 1",
        "patience.daemon_enabled",
        "expected true or false, got 1",
    ),
    (
        "[patience]",
        "success_pattern = '(unclosed'",
        "patience.success_pattern",
        'invalid regular expression "(unclosed": missing ), unterminated subpattern at position 0',
    ),
    (
        "[patience]",
        'failure_pattern = ""',
        "patience.failure_pattern",
        'expected a regular expression (a non-empty string), got ""',
    ),
    (
        "[patience]",
        "failure_pattern = 5",
        "patience.failure_pattern",
        "expected a regular expression (a non-empty string), got 5",
    ),
    (
        "[patience]",
        'default_strategy = "hope"',
        "patience.default_strategy",
        'expected one of fixed, exponential, linear, jitter, decorrelated-jitter, fibonacci, polynomial, http-aware, adaptive, diophantine, got "hope"',
    ),
    (
        "[patience]",
        'daemon_socket = ""',
        "patience.daemon_socket",
        'expected a path (a non-empty string), got ""',
    ),
    (
        "[patience]",
        "daemon_socket = [1]",
        "patience.daemon_socket",
        "expected a path (a non-empty string), got a list",
    ),
    (
        "[daemon]",
        'log_level = "loud"',
        "daemon.log_level",
        'expected one of debug, info, warning, error, got "loud"',
    ),
    (
        "[daemon]",
        "metrics_enabled = {}",
        "daemon.metrics_enabled",
        "expected true or false, got a table",
    ),
    (
        "[daemon]",
        "retention_count = 0",
        "daemon.retention_count",
        "expected a whole number, 1 or more, got 0",
    ),
    (
        "[daemon]",
        'retention_age = "0s"',
        "daemon.retention_age",
        'expected a duration greater than 0, such as "30s", got "0s"',
    ),
    (
        "[daemon]",
        "storage_path = false",
        "daemon.storage_path",
        "expected a path (a non-empty string), got false",
    ),
    (
        "[daemon]",
        "max_connections = 0",
        "daemon.max_connections",
        "expected a whole number, 1 or more, got 0",
    ),
    ("[daemon]", "peer_group = 100", "daemon.peer_group", "expected a non-empty string, got 100"),
    (
        "[rate_limiting]",
        'default_algorithm = "leaky"',
        "rate_limiting.default_algorithm",
        'expected one of diophantine, fixed-window, gcra, got "leaky"',
    ),
    (
        "[rate_limiting]",
        'fail_mode = "maybe"',
        "rate_limiting.fail_mode",
        'expected one of share, full, closed, got "maybe"',
    ),
    (
        "[rate_limiting]",
        'coordination_enabled = "true"',
        "rate_limiting.coordination_enabled",
        'expected true or false, got "true"',
    ),
    (
        "[repeater]",
        'default_interval = "0s"',
        "repeater.default_interval",
        'expected a duration greater than 0, such as "30s", got "0s"',
    ),
    (
        "[repeater]",
        'default_timeout = "1 minute"',
        "repeater.default_timeout",
        'expected a duration: "1 minute" is not a duration (try 5s, 500ms or 1m30s)',
    ),
    (
        "[repeater]",
        'continue_on_error = "no"',
        "repeater.continue_on_error",
        'expected true or false, got "no"',
    ),
    (
        "[repeater]",
        "metrics_port = 70000",
        "repeater.metrics_port",
        "expected a whole number from 1 to 65535, got 70000",
    ),
    (
        "[repeater]",
        "max_retries = -1",
        "repeater.max_retries",
        "expected a whole number, 0 or more, got -1",
    ),
    (
        "[repeater.defaults]",
        "daemon_enabled = 0",
        "repeater.defaults.daemon_enabled",
        "expected true or false, got 0",
    ),
    (
        "[defaults]",
        'timeout = "x"',
        "defaults.timeout",
        'expected a duration: "x" is not a duration (try 5s, 500ms or 1m30s)',
    ),
    (
        "[observability]",
        'health_check_port = "8080"',
        "observability.health_check_port",
        'expected a whole number from 1 to 65535, got "8080"',
    ),
    ("", "attempts = 0", "attempts", "expected a whole number from 1 to 1000, got 0"),
    (
        "",
        'daemon_timeout = "fast"',
        "daemon_timeout",
        'expected a duration: "fast" is not a duration (try 5s, 500ms or 1m30s)',
    ),
]


@pytest.mark.parametrize(("section", "line", "key", "expected"), BAD_VALUES)
def test_a_bad_value_names_file_key_and_what_is_expected(
    tmp_path: Path, section: str, line: str, key: str, expected: str
) -> None:
    path, message = error_of(tmp_path, f"{section}\n{line}\n")
    assert message == f"{path}: {key}: {expected}"


BAD_RESOURCES = [
    ('"api" = 5', "rate_limiting.resources.api: expected a table, got 5"),
    (
        '"api" = { limit = 10 }',
        'rate_limiting.resources.api: expected window ({ limit = 100, window = "1m" })',
    ),
    (
        '"api" = { window = "1m" }',
        'rate_limiting.resources.api: expected limit ({ limit = 100, window = "1m" })',
    ),
    (
        '"api" = { }',
        'rate_limiting.resources.api: expected limit and window ({ limit = 100, window = "1m" })',
    ),
    (
        '"api" = { limit = 0, window = "1m" }',
        "rate_limiting.resources.api.limit: expected a whole number from 1 to 1099511627776, got 0",
    ),
    (
        '"api" = { limit = "many", window = "1m" }',
        'rate_limiting.resources.api.limit: expected a whole number from 1 to 1099511627776, got "many"',
    ),
    (
        '"api" = { limit = 5, window = "0s" }',
        'rate_limiting.resources.api.window: expected a duration greater than 0, such as "30s", got "0s"',
    ),
    (
        '"api" = { limit = 5, window = 60 }',
        'rate_limiting.resources.api.window: expected a duration greater than 0, such as "30s", got 60',
    ),
    (
        '"api" = { limit = 5, window = "20000d" }',
        'rate_limiting.resources.api.window: expected a duration of at most 3650d, got "20000d"',
    ),
    (
        '"api" = { limit = 5, window = "1m", algorithm = "magic" }',
        'rate_limiting.resources.api.algorithm: expected one of diophantine, fixed-window, gcra, got "magic"',
    ),
    (
        '"" = { limit = 5, window = "1m" }',
        'rate_limiting.resources."": expected a resource id or pattern, got ""',
    ),
    (
        '"api:external:*" = { limit = 5, window = "x" }',
        'rate_limiting.resources."api:external:*".window: expected a duration: "x" is not a duration (try 5s, 500ms or 1m30s)',
    ),
]


@pytest.mark.parametrize(("line", "expected"), BAD_RESOURCES)
def test_a_bad_resource_limit_names_file_key_and_what_is_expected(
    tmp_path: Path, line: str, expected: str
) -> None:
    path, message = error_of(tmp_path, f"[rate_limiting.resources]\n{line}\n")
    assert message == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("patience = 5\n", "patience: expected a table, got 5"),
        ("daemon = 'x'\n", 'daemon: expected a table, got "x"'),
        ("tools = [1]\n", "tools: expected a table, got a list"),
        ("[rate_limiting]\nresources = 3\n", "rate_limiting.resources: expected a table, got 3"),
        ("[patience]\ndefaults = true\n", "patience.defaults: expected a table, got true"),
        ("defaults = 1\n", "defaults: expected a table, got 1"),
    ],
)
def test_a_section_that_is_not_a_table(tmp_path: Path, text: str, expected: str) -> None:
    path, message = error_of(tmp_path, text)
    assert message == f"{path}: {expected}"


def test_one_key_set_twice_in_one_file_is_an_error(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, "attempts = 3\n[patience]\nmax_attempts = 4\n")
    assert (
        message
        == f"{path}: patience.max_attempts: patience.attempts is already set by attempts (keep one)"
    )
    path, message = error_of(
        tmp_path, "[repeater]\ntimeout = '1s'\n[repeater.defaults]\ndefault_timeout = '2s'\n"
    )
    assert message == (
        f"{path}: repeater.defaults.default_timeout: "
        "repeater.default_timeout is already set by repeater.timeout (keep one)"
    )


def test_invalid_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, "[patience]\nattempts 3\n")
    assert message.startswith(f"{path}: not valid TOML: ")
    assert "line 2" in message


def test_invalid_yaml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, "patience:\n  attempts: [3\n", name="c.yaml")
    assert message.startswith(f"{path}: not valid YAML: ")
    assert "(at line 3, column 1)" in message


def test_yaml_whose_top_level_is_not_a_mapping(tmp_path: Path) -> None:
    path, message = error_of(tmp_path, "- a\n- b\n", name="c.yml")
    assert message == f"{path}: expected a table of sections at the top level"


def test_an_empty_yaml_file_and_an_empty_section_are_fine(tmp_path: Path) -> None:
    for name, text in (("c.yaml", ""), ("d.yaml", "patience:\n"), ("e.toml", "[patience]\n")):
        path, config = load_file(tmp_path, text, name=name)
        assert [doc.path for doc in config.documents] == [path]
        assert config.warnings == [] and config.source("patience.attempts") == "default"


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b"attempts = 3\n# caf\xe9\n")
    empty = str(tmp_path)
    with pytest.raises(ConfigError) as err:
        load(config_file=str(path), environ={"HOME": empty}, cwd=empty, system_dir=empty)
    assert str(err.value) == f"{path}: not valid UTF-8 (byte 18)"


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / ".config" / "patience" / "config.toml").mkdir(parents=True)
    with pytest.raises(ConfigError) as err:
        load(environ={"HOME": str(home)}, cwd=str(tmp_path), system_dir=str(tmp_path))
    assert str(err.value) == f"{home}/.config/patience/config.toml: cannot read (Is a directory)"


UNKNOWN = [
    ("colour = 'blue'\n", "unknown key colour (ignored)"),
    ("atempts = 3\n", "unknown key atempts (ignored; did you mean attempts?)"),
    (
        "[patience]\nmax_attemps = 3\n",
        "unknown key patience.max_attemps (ignored; did you mean max_attempts?)",
    ),
    (
        "[patience.defaults]\nstrategy = 'fixed'\n",
        "unknown key patience.defaults.strategy (ignored)",
    ),
    ("[demon]\nsocket_path = '/x'\n", "unknown key demon (ignored; did you mean daemon?)"),
    ("[daemon]\nsocket = '/x'\n", "unknown key daemon.socket (ignored; did you mean socket_path?)"),
    ("[rate_limiting]\nalgorithm = 'gcra'\n", "unknown key rate_limiting.algorithm (ignored)"),
    (
        "[rate_limiting.resources]\napi = { limit = 1, window = '1s', burst = 2 }\n",
        "unknown key rate_limiting.resources.api.burst (ignored)",
    ),
    ("[tools.retry]\nx = 1\n", "unknown key tools.retry (ignored)"),
    ("[defaults]\ninterval = '1s'\n", "unknown key defaults.interval (ignored)"),
    (
        "[observability]\nhealth_port = 1\n",
        "unknown key observability.health_port (ignored; did you mean health_check_port?)",
    ),
    ("[repeater]\ndefaults = {}\nresources = {}\n", "unknown key repeater.resources (ignored)"),
]


@pytest.mark.parametrize(("text", "warning"), UNKNOWN)
def test_an_unknown_key_is_a_warning_naming_file_and_key(
    tmp_path: Path, text: str, warning: str
) -> None:
    path, config = load_file(tmp_path, text)
    assert config.warnings == [f"{path}: {warning}"]


def test_an_unknown_key_in_a_yaml_file(tmp_path: Path) -> None:
    path, config = load_file(tmp_path, "tools:\n  patience:\n    attemps: 3\n", name="c.yaml")
    assert config.warnings == [
        f"{path}: unknown key tools.patience.attemps (ignored; did you mean attempts?)"
    ]


def test_values_are_read_case_insensitively_where_they_are_words(tmp_path: Path) -> None:
    _, config = load_file(
        tmp_path,
        "[daemon]\nlog_level = 'WARN'\n[patience]\ndefault_strategy = 'Exp'\n"
        "[rate_limiting]\nfail_mode = 'Closed'\n",
    )
    assert config.get("daemon.log_level") == "warning"
    assert config.get("patience.default_strategy") == "exponential"
    assert config.get("rate_limiting.fail_mode") == "closed"


def test_a_timeout_of_plain_zero_means_none(tmp_path: Path) -> None:
    _, config = load_file(tmp_path, "timeout = 0\n[repeater]\ndefault_timeout = 0\n")
    assert config.get("patience.timeout") == 0.0
    assert config.get("repeater.default_timeout") == 0.0


def test_paths_expand_a_tilde(tmp_path: Path) -> None:
    _, config = load_file(tmp_path, "[daemon]\nsocket_path = '~/d.sock'\n")
    assert config.get("daemon.socket_path") == os.path.expanduser("~/d.sock")


# ---- writing TOML and matching resource patterns --------------------------------------------

scalars = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)


@given(st.dictionaries(st.text(), scalars, max_size=5))
def test_written_toml_reads_back_the_same(table: dict[str, object]) -> None:
    text = "".join(f"{toml_key(k)} = {toml_value(v)}\n" for k, v in table.items())
    assert tomllib.loads(text) == table
    assert tomllib.loads(f"x = {toml_value(table)}\n") == {"x": table}


def _fnmatch_literal_brackets(pattern: str, text: str) -> bool:
    return fnmatch.fnmatchcase(text, pattern.replace("[", "[[]"))


@given(st.text(alphabet="ab*?[]:", max_size=8), st.text(alphabet="ab[]:", max_size=10))
def test_glob_match_agrees_with_fnmatch_where_brackets_are_literal(pattern: str, text: str) -> None:
    assert glob_match(pattern, text) == _fnmatch_literal_brackets(pattern, text)


def test_find_limit_prefers_the_exact_id_then_the_most_specific_pattern() -> None:
    a, b, c, d = (ResourceLimit(Limit(n, 1.0)) for n in (1, 2, 3, 4))
    limits = {"api:*": a, "api:external:*": b, "api:external:x.com": c, "*": d}
    assert find_limit(limits, "api:external:x.com") is c
    assert find_limit(limits, "api:external:y.com") is b
    assert find_limit(limits, "api:internal:y") is a
    assert find_limit(limits, "network:tcp:[::1]:22") is d
    assert find_limit({"api:*": a}, "db") is None
    assert find_limit({"network:tcp:[::1]:*": a}, "network:tcp:[::1]:22") is a
