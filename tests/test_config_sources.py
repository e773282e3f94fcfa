"""The shared configuration: each source, their precedence, the environment variables, and
what a tool gets from `load` (values, sources, fill, resource limits). Never reads /etc:
every test points the system directory, HOME and the working directory into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

from patience.config import VARIABLES, Config, ConfigError, load, schema
from patience.config.resources import ResourceLimit
from patience.settings import Limit


class Place:
    """An isolated machine: system dir, home, project dir and environment under tmp_path."""

    def __init__(self, tmp: Path) -> None:
        self.etc, self.home, self.cwd = tmp / "etc", tmp / "home", tmp / "project"
        for d in (self.etc, self.home, self.cwd):
            d.mkdir()
        self.environ: dict[str, str] = {"HOME": str(self.home)}

    def write(self, path: Path, text: str) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    def system(self, text: str, name: str = "config.toml") -> str:
        return self.write(self.etc / name, text)

    def user(self, text: str) -> str:
        return self.write(self.home / ".config" / "patience" / "config.toml", text)

    def project(self, text: str, name: str = ".patience.toml") -> str:
        return self.write(self.cwd / name, text)

    def explicit(self, text: str, name: str = "explicit.toml") -> str:
        return self.write(self.cwd.parent / name, text)

    def load(self, tool: str = "patience", config_file: str | None = None) -> Config:
        return load(
            tool,
            config_file=config_file,
            environ=self.environ,
            cwd=str(self.cwd),
            system_dir=str(self.etc),
        )


@pytest.fixture
def place(tmp_path: Path) -> Place:
    return Place(tmp_path)


def test_nothing_configured_gives_the_defaults(place: Place) -> None:
    config = place.load()
    assert config.documents == [] and config.warnings == []
    for name, key in schema.KEYS.items():
        assert config.source(name) == "default"
        assert config.get(name) == (
            schema.KEYS[key.fallback].default if key.fallback else key.default
        )
    assert config.get("patience.attempts") == 3
    assert config.get("repeater.log_level") == "info"  # the fallback's default
    assert config.limits() == {}


def test_system_toml_file(place: Place) -> None:
    path = place.system("[patience]\nattempts = 4\n")
    config = place.load()
    assert config.get("patience.attempts") == 4
    assert config.source("patience.attempts") == f"{path}: patience.attempts"
    assert config.documents[0].label == "system file"


def test_system_yaml_file_with_the_seed_tools_layout(place: Place) -> None:
    path = place.system(
        """
daemon:
  socket_path: /run/patience/d.sock
  log_level: info
  metrics_enabled: true
rate_limiting:
  coordination_enabled: true
  default_algorithm: diophantine
  resources:
    "api:external:*":
      limit: 1000
      window: 1h
    "database:postgres:*":
      limit: 100
      window: 1m
tools:
  patience:
    default_strategy: exponential
    max_attempts: 10
  repeater:
    default_interval: 30s
    default_timeout: 60s
    continue_on_error: true
""",
        name="config.yaml",
    )
    config = place.load()
    assert config.get("daemon.socket_path") == "/run/patience/d.sock"
    assert config.get("patience.attempts") == 10
    assert config.source("patience.attempts") == f"{path}: tools.patience.max_attempts"
    assert config.get("repeater.default_interval") == 30.0
    assert config.get("repeater.default_timeout") == 60.0
    assert config.limits() == {
        "api:external:*": ResourceLimit(Limit(1000, 3600.0, "diophantine")),
        "database:postgres:*": ResourceLimit(Limit(100, 60.0, "diophantine")),
    }
    assert config.warnings == []


def test_system_toml_is_read_and_yaml_beside_it_is_ignored_with_a_warning(place: Place) -> None:
    toml = place.system("[patience]\nattempts = 4\n")
    yaml = place.system("patience:\n  attempts: 9\n", name="config.yaml")
    config = place.load()
    assert config.get("patience.attempts") == 4
    assert config.warnings == [f"{yaml}: ignored, {toml} is read instead (keep one)"]


def test_user_file_under_home(place: Place) -> None:
    path = place.user("[patience]\ntimeout = '2m'\n")
    config = place.load()
    assert config.get("patience.timeout") == 120.0
    assert config.source("patience.timeout") == f"{path}: patience.timeout"


def test_user_file_under_xdg_config_home(place: Place, tmp_path: Path) -> None:
    xdg = tmp_path / "xdg"
    place.environ["XDG_CONFIG_HOME"] = str(xdg)
    place.user("[patience]\nattempts = 4\n")  # under HOME: not read when XDG is set
    path = place.write(xdg / "patience" / "config.toml", "[patience]\nattempts = 6\n")
    config = place.load()
    assert config.get("patience.attempts") == 6
    assert config.source("patience.attempts") == f"{path}: patience.attempts"


def test_a_relative_xdg_config_home_is_ignored(place: Place) -> None:
    place.environ["XDG_CONFIG_HOME"] = "relative/dir"
    place.user("[patience]\nattempts = 4\n")
    assert place.load().get("patience.attempts") == 4


@pytest.mark.parametrize("name", [".patience.toml", "patience.toml"])
def test_project_file_in_the_current_directory(place: Place, name: str) -> None:
    path = place.project("attempts = 7\n", name=name)
    config = place.load()
    assert config.get("patience.attempts") == 7
    assert config.source("patience.attempts") == f"{path}: attempts"


def test_both_project_files_the_dotted_one_wins_with_a_warning(place: Place) -> None:
    dotted = place.project("attempts = 7\n")
    plain = place.project("attempts = 8\n", name="patience.toml")
    config = place.load()
    assert config.get("patience.attempts") == 7
    assert config.warnings == [f"{plain}: ignored, {dotted} is read instead (keep one)"]


def test_project_file_is_found_relative_to_the_working_directory(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    place.project("attempts = 7\n")
    monkeypatch.chdir(place.cwd)
    config = load(environ=place.environ, system_dir=str(place.etc))
    assert config.get("patience.attempts") == 7
    assert config.source("patience.attempts") == ".patience.toml: attempts"


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("attempts = 5", "patience.attempts", 5),
        ('timeout = "30s"', "patience.timeout", 30.0),
        ("success_pattern = 'ready\\d'", "patience.success_pattern", "ready\\d"),
        ('failure_pattern = "FATAL"', "patience.failure_pattern", "FATAL"),
        ("case_insensitive = true", "patience.case_insensitive", True),
        ("daemon_enabled = true", "patience.daemon_enabled", True),
        ('daemon_socket = "/tmp/d.sock"', "patience.daemon_socket", "/tmp/d.sock"),
        ('daemon_timeout = "2s"', "patience.daemon_timeout", 2.0),
        ("daemon_auto_start = false", "patience.daemon_auto_start", False),
    ],
)
def test_go_patience_flat_keys_mean_the_patience_section(
    place: Place, line: str, key: str, value: object
) -> None:
    path = place.project(line + "\n")
    config = place.load()
    assert config.get(key) == value
    assert config.source(key) == f"{path}: {line.split(' ', maxsplit=1)[0]}"
    assert config.warnings == []


def test_defaults_subtables_are_the_same_keys(place: Place) -> None:
    path = place.user(
        "[patience.defaults]\ndaemon_enabled = true\nresource_detection = false\n"
        "[repeater.defaults]\ndaemon_enabled = true\nresource_detection = false\n"
    )
    config = place.load()
    for tool in ("patience", "repeater"):
        assert config.get(f"{tool}.daemon_enabled") is True
        assert config.get(f"{tool}.resource_detection") is False
        assert config.source(f"{tool}.daemon_enabled") == f"{path}: {tool}.defaults.daemon_enabled"


def test_go_rpr_defaults_and_observability_sections_mean_repeater(place: Place) -> None:
    path = place.explicit(
        '[defaults]\ntimeout = "45s"\nmax_retries = 2\nlog_level = "debug"\n'
        "[observability]\nmetrics_enabled = false\nmetrics_port = 9100\n"
        "health_enabled = true\nhealth_check_port = 8081\n"
    )
    config = place.load("rpr", config_file=path)
    assert config.get("repeater.default_timeout") == 45.0
    assert config.source("repeater.default_timeout") == f"{path}: defaults.timeout"
    assert config.get("repeater.max_retries") == 2
    assert config.get("repeater.log_level") == "debug"
    assert config.get("repeater.metrics_enabled") is False
    assert config.get("repeater.metrics_port") == 9100
    assert config.get("repeater.health_enabled") is True
    assert config.get("repeater.health_check_port") == 8081


def test_explicit_file_from_the_config_option(place: Place) -> None:
    path = place.explicit("[patience]\nattempts = 11\n")
    config = place.load(config_file=path)
    assert config.get("patience.attempts") == 11
    assert config.documents[-1].label == "explicit file"


def test_explicit_file_from_patience_config_file(place: Place) -> None:
    path = place.explicit("[patience]\nattempts = 11\n")
    place.environ["PATIENCE_CONFIG_FILE"] = path
    for tool in ("patience", "rpr", "patience-daemon"):
        assert place.load(tool).get("patience.attempts") == 11


def test_explicit_file_path_may_start_with_a_tilde(
    place: Place, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(place.home))  # os.path.expanduser reads the real one
    place.write(place.home / "mine.toml", "[patience]\nattempts = 12\n")
    place.environ["PATIENCE_CONFIG_FILE"] = "~/mine.toml"
    assert place.load().get("patience.attempts") == 12


def test_rpr_config_file_comes_before_patience_config_file_for_rpr_only(place: Place) -> None:
    place.environ["PATIENCE_CONFIG_FILE"] = place.explicit("[patience]\nattempts = 11\n", "p.toml")
    place.environ["RPR_CONFIG_FILE"] = place.explicit("[patience]\nattempts = 12\n", "r.toml")
    assert place.load("rpr").get("patience.attempts") == 12
    assert place.load("patience").get("patience.attempts") == 11
    assert place.load("patience-daemon").get("patience.attempts") == 11


def test_config_option_beats_the_variables(place: Place) -> None:
    place.environ["PATIENCE_CONFIG_FILE"] = place.explicit("[patience]\nattempts = 11\n", "p.toml")
    place.environ["RPR_CONFIG_FILE"] = place.explicit("[patience]\nattempts = 12\n", "r.toml")
    flag = place.explicit("[patience]\nattempts = 13\n", "flag.toml")
    assert place.load("rpr", config_file=flag).get("patience.attempts") == 13


@pytest.mark.parametrize(
    ("tool", "variable"),
    [
        ("patience", "PATIENCE_CONFIG_FILE"),
        ("rpr", "RPR_CONFIG_FILE"),
        ("rpr", "PATIENCE_CONFIG_FILE"),
    ],
)
def test_a_missing_explicit_file_is_an_error_naming_where_it_was_named(
    place: Place, tool: str, variable: str
) -> None:
    missing = str(place.cwd / "nope.toml")
    place.environ[variable] = missing
    with pytest.raises(ConfigError) as err:
        place.load(tool)
    assert str(err.value) == f"{variable}: {missing}: no such file"
    with pytest.raises(ConfigError) as err:
        place.load(tool, config_file=missing)
    assert str(err.value) == f"--config: {missing}: no such file"


SOURCES = ["system", "user", "project", "explicit", "environment"]


@pytest.mark.parametrize("top", range(len(SOURCES)))
def test_precedence_each_source_beats_every_lower_one(place: Place, top: int) -> None:
    """attempts is set in every source up to `top`; the value of `top` must win, and a key
    set only in the lowest source still shows through."""
    place.system("[patience]\nattempts = 1\n[daemon]\nlog_level = 'error'\n")
    writers = {
        "user": lambda: place.user("[patience]\nattempts = 2\n"),
        "project": lambda: place.project("attempts = 3\n"),
        "explicit": lambda: place.environ.__setitem__(
            "PATIENCE_CONFIG_FILE", place.explicit("[patience]\nattempts = 4\n")
        ),
        "environment": lambda: place.environ.__setitem__("PATIENCE_ATTEMPTS", "5"),
    }
    for name in SOURCES[1 : top + 1]:
        writers[name]()
    config = place.load()
    assert config.get("patience.attempts") == top + 1
    assert config.get("daemon.log_level") == "error"
    labels = [doc.label for doc in config.documents]
    expected = ["system file", "user file", "project file", "explicit file", "environment"]
    assert labels == expected[: top + 1]


def test_environment_beats_the_explicit_file(place: Place) -> None:
    path = place.explicit("[patience]\nattempts = 4\n")
    place.environ["PATIENCE_ATTEMPTS"] = "9"
    config = place.load(config_file=path)
    assert config.get("patience.attempts") == 9
    assert config.source("patience.attempts") == "environment variable PATIENCE_ATTEMPTS"


# ---- environment variables ------------------------------------------------------------------

GOOD_TEXT = {
    schema.Flag: ("off", False),
    schema.Whole: ("7", 7),
    schema.Seconds: ("1m30s", 90.0),
    schema.Path: ("/tmp/x.sock", "/tmp/x.sock"),
    schema.Pattern: ("ERROR|FATAL", "ERROR|FATAL"),
}
SPECIAL_TEXT = {
    "daemon.log_level": ("WARN", "warning"),
    "repeater.log_level": ("debug", "debug"),
    "patience.default_strategy": ("dj", "decorrelated-jitter"),
}


@pytest.mark.parametrize(("variable", "name"), sorted(VARIABLES.items()))
def test_each_variable_sets_its_key(place: Place, variable: str, name: str) -> None:
    key = schema.canonical(name)
    assert key is not None
    text, value = SPECIAL_TEXT.get(key) or GOOD_TEXT[type(schema.KEYS[key].kind)]  # type: ignore[index]
    place.environ[variable] = text
    config = place.load()
    assert config.get(key) == value
    assert config.source(key) == f"environment variable {variable}"


CHECKED_VARIABLES = sorted(
    (variable, name)
    for variable, name in VARIABLES.items()
    if not isinstance(schema.KEYS[schema.canonical(name) or name].kind, schema.Path)
)  # any non-empty text is a path


@pytest.mark.parametrize(("variable", "name"), CHECKED_VARIABLES)
def test_a_bad_variable_is_an_error_naming_it(place: Place, variable: str, name: str) -> None:
    key = schema.canonical(name)
    assert key is not None
    kind = schema.KEYS[key].kind
    place.environ[variable] = "[unclosed" if isinstance(kind, schema.Pattern) else "not valid"
    with pytest.raises(ConfigError) as err:
        place.load()
    message = str(err.value)
    assert message.startswith(f"environment variable {variable}: ")
    assert "\n" not in message
    assert "expected" in message or "invalid regular expression" in message


def test_the_variable_table_follows_the_rule_for_every_key() -> None:
    """PATIENCE_<KEY> for each [patience] key, RPR_<KEY> for each [repeater] key (aliases too),
    with PATIENCE_DAEMON_SOCKET and PATIENCE_LOG_LEVEL meaning the shared [daemon] keys."""
    expected = {}
    for name in (*schema.KEYS, *schema.ALIASES):
        section, _, short = name.partition(".")
        prefix = {"patience": "PATIENCE_", "repeater": "RPR_"}.get(section)
        if prefix:
            expected[prefix + short.upper()] = name
    expected["PATIENCE_DAEMON_SOCKET"] = "daemon.socket_path"
    expected["PATIENCE_LOG_LEVEL"] = "daemon.log_level"
    assert expected == VARIABLES


def test_an_empty_variable_counts_as_unset(place: Place) -> None:
    place.project("attempts = 7\n")
    place.environ["PATIENCE_ATTEMPTS"] = ""
    assert place.load().get("patience.attempts") == 7


def test_unrelated_variables_are_ignored(place: Place) -> None:
    place.environ |= {"RPR_ITERATION": "3", "PATIENCE_WHATEVER": "x"}
    config = place.load()
    assert config.documents == [] and config.warnings == []


def test_a_variable_and_its_alias_together_are_an_error(place: Place) -> None:
    place.environ |= {"PATIENCE_ATTEMPTS": "4", "PATIENCE_MAX_ATTEMPTS": "5"}
    with pytest.raises(ConfigError) as err:
        place.load()
    assert str(err.value) == (
        "environment variable PATIENCE_MAX_ATTEMPTS: "
        "patience.attempts is already set by PATIENCE_ATTEMPTS (keep one)"
    )


def test_rpr_variables_fall_back_to_the_patience_ones(place: Place) -> None:
    place.environ |= {"PATIENCE_DAEMON_SOCKET": "/p.sock", "PATIENCE_LOG_LEVEL": "error"}
    config = place.load("rpr")
    assert config.get("repeater.daemon_socket") == "/p.sock"
    assert config.get("repeater.log_level") == "error"
    assert config.source("repeater.log_level") == "environment variable PATIENCE_LOG_LEVEL"
    assert config.get("patience.daemon_socket") == "/p.sock"
    assert config.get("daemon.socket_path") == "/p.sock"
    place.environ |= {"RPR_DAEMON_SOCKET": "/r.sock", "RPR_LOG_LEVEL": "debug"}
    config = place.load("rpr")
    assert config.get("repeater.daemon_socket") == "/r.sock"
    assert config.get("repeater.log_level") == "debug"
    assert config.get("patience.daemon_socket") == "/p.sock"  # patience is not rpr
    assert config.get("daemon.log_level") == "error"


def test_a_higher_source_wins_even_over_a_more_specific_key(place: Place) -> None:
    """[repeater] log_level in a file loses to PATIENCE_LOG_LEVEL: the environment is higher.
    Within one source the tool's own key beats the shared one."""
    place.user("[repeater]\nlog_level = 'debug'\n[daemon]\nlog_level = 'error'\n")
    assert place.load("rpr").get("repeater.log_level") == "debug"
    place.environ["PATIENCE_LOG_LEVEL"] = "warning"
    assert place.load("rpr").get("repeater.log_level") == "warning"


# ---- what a tool does with the result ---------------------------------------------------------


def test_fill_sets_only_options_the_user_did_not_give(place: Place) -> None:
    place.project('attempts = 7\ntimeout = "3s"\n')
    config = place.load()
    values: dict[str, object] = {"attempts": 9, "timeout": 0.0, "case_insensitive": False}
    mapping = {
        "attempts": "patience.attempts",
        "timeout": "patience.timeout",
        "case_insensitive": "patience.case_insensitive",
    }
    config.fill(values, {"attempts"}, mapping)
    assert values == {"attempts": 9, "timeout": 3.0, "case_insensitive": False}


def test_fill_with_nothing_configured_changes_nothing(place: Place) -> None:
    values: dict[str, object] = {"attempts": 3}
    place.load().fill(values, set(), {"attempts": "patience.attempts"})
    assert values == {"attempts": 3}


def test_typed_getters(place: Place) -> None:
    place.user("[daemon]\nretention_count = 5\nretention_age = '1d'\n")
    config = place.load("patience-daemon")
    assert config.flag("daemon.metrics_enabled") is True
    assert config.number("daemon.retention_count") == 5
    assert config.seconds("daemon.retention_age") == 86400.0
    assert config.seconds("repeater.default_interval") is None
    assert config.text("daemon.log_level") == "info"
    assert config.text("daemon.socket_path") is None
    assert config.is_set("daemon.retention_count") and not config.is_set("daemon.log_level")


def test_aliases_read_the_same_key(place: Place) -> None:
    place.user("[patience]\nmax_attempts = 8\n[daemon]\nretention = '2d'\n")
    config = place.load()
    assert config.get("patience.max_attempts") == config.get("patience.attempts") == 8
    assert config.get("daemon.retention_age") == 2 * 86400.0


def test_an_unknown_key_name_in_code_is_a_key_error(place: Place) -> None:
    with pytest.raises(KeyError):
        place.load().get("patience.atempts")


def test_resource_limits_merge_by_id_a_higher_source_replacing_an_entry(place: Place) -> None:
    place.system(
        "[rate_limiting]\ndefault_algorithm = 'gcra'\n"
        "[rate_limiting.resources]\n"
        '"api:external:*" = { limit = 1000, window = "1h" }\n'
        '"db" = { limit = 5, window = "1s", algorithm = "fixed-window" }\n'
    )
    user = place.user('[rate_limiting.resources]\n"db" = { limit = 10, window = "1m" }\n')
    config = place.load()
    assert config.limits() == {
        "api:external:*": ResourceLimit(Limit(1000, 3600.0, "gcra")),
        "db": ResourceLimit(Limit(10, 60.0, "gcra")),
    }
    assert config.resource_entries()["db"].where == f"{user}: rate_limiting.resources.db"
    assert config.limit_for("api:external:example.com") == ResourceLimit(
        Limit(1000, 3600.0, "gcra")
    )
    assert config.limit_for("db") == ResourceLimit(Limit(10, 60.0, "gcra"))
    assert config.limit_for("database:postgres:x") is None
