"""The configuration shared by `rpr`, `patience` and `patience-daemon`.

Sources, lowest to highest precedence: the defaults, the system file, the user file, the
project file, the explicit file (--config or a variable) and the environment. Command-line
flags come last and are applied by each tool:

    from patience.config import ConfigError, load
    try:
        config = load("rpr", config_file=parsed.text("config"))
    except ConfigError as exc:          # one line: file or variable, key, what is expected
        ...print(f"rpr: {exc}"); exit 2
    config.fill(parsed.values, parsed.explicit, {"timeout": "repeater.default_timeout"})

Files: existence is checked with a stat first; a file found is read by
patience.config.sources (safely, through the parse cache), which is imported only then, as
are the schema, the parsers (tomllib, PyYAML) and the layout rules: a start with no
configuration costs a few system calls and a few dictionary lookups. This module is the
front door, loaded on every start, so it imports nothing but `os`.

Environment: the rule, kept from the Go tools, is that `PATIENCE_<KEY>` sets `[patience] <key>`
and `RPR_<KEY>` sets `[repeater] <key>` (`PATIENCE_ATTEMPTS`, `RPR_TIMEOUT`, ...). Two are
shared by every tool and the daemon: `PATIENCE_DAEMON_SOCKET` sets `[daemon]
socket_path` and `PATIENCE_LOG_LEVEL` sets `[daemon] log_level`; `RPR_DAEMON_SOCKET` and
`RPR_LOG_LEVEL` override them for `rpr` (through the keys' fallbacks). An empty variable counts
as unset. The table (VARIABLES) is written out (a test checks it follows the rule for every
key) so that looking the variables up does not load the schema.
docs/configuration.md is the user's guide.
"""

from __future__ import annotations

import os

__all__ = [
    "CONFIG_FILE_VARIABLES",
    "PROJECT_NAMES",
    "SYSTEM_DIR",
    "SYSTEM_NAMES",
    "VARIABLES",
    "Config",
    "ConfigError",
    "config_file_variable",
    "existing",
    "exists",
    "gather",
    "load",
    "project_files",
    "read_environment",
    "system_files",
    "user_files",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from patience.config.layout import Document, Entry
    from patience.config.resources import ResourceLimit


# Where configuration comes from -------------------------------------------------------------

SYSTEM_DIR = "/etc/patience"
SYSTEM_NAMES = ("config.toml", "config.yaml")
PROJECT_NAMES = (".patience.toml", "patience.toml")


def exists(path: str) -> bool:
    try:
        os.stat(path)
    except (OSError, ValueError):
        return False
    return True


def system_files(system_dir: str) -> list[str]:
    return [os.path.join(system_dir, n) for n in SYSTEM_NAMES]


def user_files(environ: Mapping[str, str]) -> list[str]:
    base = environ.get("XDG_CONFIG_HOME")
    if not base or not os.path.isabs(base):  # the XDG spec: ignore a relative value
        home = environ.get("HOME") or os.path.expanduser("~")
        base = os.path.join(home, ".config")
    return [os.path.join(base, "patience", "config.toml")]


def project_files(cwd: str | None) -> list[str]:
    return [os.path.join(cwd, n) if cwd else n for n in PROJECT_NAMES]


def existing(candidates: list[str]) -> list[str]:
    """The candidates that exist: the first is read, any other is ignored with a warning."""
    return [path for path in candidates if exists(path)]


VARIABLES = {
    "PATIENCE_DAEMON_SOCKET": "daemon.socket_path",
    "PATIENCE_LOG_LEVEL": "daemon.log_level",
    "RPR_DEFAULT_INTERVAL": "repeater.default_interval",
    "RPR_DEFAULT_TIMEOUT": "repeater.default_timeout",
    "RPR_TIMEOUT": "repeater.timeout",
    "RPR_CONTINUE_ON_ERROR": "repeater.continue_on_error",
    "RPR_DAEMON_ENABLED": "repeater.daemon_enabled",
    "RPR_DAEMON_SOCKET": "repeater.daemon_socket",
    "RPR_DAEMON_TIMEOUT": "repeater.daemon_timeout",
    "RPR_DAEMON_AUTO_START": "repeater.daemon_auto_start",
    "RPR_RESOURCE_DETECTION": "repeater.resource_detection",
    "RPR_MAX_RETRIES": "repeater.max_retries",
    "RPR_LOG_LEVEL": "repeater.log_level",
    "RPR_METRICS_ENABLED": "repeater.metrics_enabled",
    "RPR_METRICS_PORT": "repeater.metrics_port",
    "RPR_HEALTH_ENABLED": "repeater.health_enabled",
    "RPR_HEALTH_CHECK_PORT": "repeater.health_check_port",
    "PATIENCE_DEFAULT_STRATEGY": "patience.default_strategy",
    "PATIENCE_ATTEMPTS": "patience.attempts",
    "PATIENCE_MAX_ATTEMPTS": "patience.max_attempts",
    "PATIENCE_TIMEOUT": "patience.timeout",
    "PATIENCE_SUCCESS_PATTERN": "patience.success_pattern",
    "PATIENCE_FAILURE_PATTERN": "patience.failure_pattern",
    "PATIENCE_CASE_INSENSITIVE": "patience.case_insensitive",
    "PATIENCE_DAEMON_ENABLED": "patience.daemon_enabled",
    "PATIENCE_DAEMON_TIMEOUT": "patience.daemon_timeout",
    "PATIENCE_DAEMON_AUTO_START": "patience.daemon_auto_start",
    "PATIENCE_RESOURCE_DETECTION": "patience.resource_detection",
}

# Where the explicit configuration file is named, first found wins (after --config).
CONFIG_FILE_VARIABLES = {
    "rpr": ("RPR_CONFIG_FILE", "PATIENCE_CONFIG_FILE"),
    "patience": ("PATIENCE_CONFIG_FILE",),
    "patience-daemon": ("PATIENCE_CONFIG_FILE",),
}


def read_environment(environ: Mapping[str, str]) -> Document | None:
    """The variables that are set, checked; None when there are none."""
    present = VARIABLES.keys() & environ.keys()  # one pass: os.environ lookups are slow
    found = [v for v in VARIABLES if v in present and environ[v]]
    if not found:
        return None
    from patience.config.layout import Document

    doc = Document("environment", None)
    for variable in found:
        doc.setting(VARIABLES[variable], environ[variable], variable, from_text=True)
    return doc


def config_file_variable(tool: str, environ: Mapping[str, str]) -> tuple[str, str] | None:
    """(variable, path) of the explicit file named in the environment, if any."""
    for variable in CONFIG_FILE_VARIABLES[tool]:
        path = environ.get(variable)
        if path:
            return variable, path
    return None


class ConfigError(Exception):
    """A configuration value or file that cannot be used. The message is exactly one line that
    names the file (or environment variable), the key and what is expected; a CLI prints it
    after its own prefix and exits 2."""


def gather(
    tool: str = "patience",
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    system_dir: str | None = None,
) -> list[Document]:
    """Every source that is present, lowest precedence first, each with all its problems
    (for `config validate`); `load` stops at the first. A missing explicit file raises."""
    if environ is None:
        environ = os.environ
    if system_dir is None:
        system_dir = environ.get("PATIENCE_SYSTEM_CONFIG_DIR") or SYSTEM_DIR
    located = [
        ("system file", existing(system_files(system_dir))),
        ("user file", existing(user_files(environ))),
        ("project file", existing(project_files(cwd))),
    ]
    named = config_file_variable(tool, environ)
    if config_file:
        named = ("--config", config_file)
    if named:
        path = os.path.expanduser(named[1])
        if not exists(path):
            raise ConfigError(f"{named[0]}: {path}: no such file")
        located.append(("explicit file", [path]))
    documents = _read_files([(label, paths) for label, paths in located if paths], environ)
    env = read_environment(environ)
    return documents if env is None else [*documents, env]


def _read_files(located: list[tuple[str, list[str]]], environ: Mapping[str, str]) -> list[Document]:
    """Read the first of each source's files through the parse cache; warn about the rest."""
    if not located:
        return []
    from patience.config import sources
    from patience.config.cache import ParseCache, cache_file

    cache = ParseCache(cache_file(environ))
    documents = []
    for label, (path, *ignored) in located:
        doc = sources.read(label, path, cache)
        for other in ignored:
            doc.warnings.append(f"{other}: ignored, {path} is read instead (keep one)")
        documents.append(doc)
    cache.save()
    return documents


def load(
    tool: str = "patience",
    *,
    config_file: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    system_dir: str | None = None,
) -> Config:
    """The effective configuration for `tool` ("patience", "rpr" or "patience-daemon").

    `config_file` is the tool's --config value; `environ`, `cwd` and `system_dir` default to
    os.environ, the current directory and $PATIENCE_SYSTEM_CONFIG_DIR or /etc/patience, and
    exist so that tests never read the host's files. Raises ConfigError
    (one line: file or variable, key, what is expected) on the first bad value."""
    documents = gather(
        tool, config_file=config_file, environ=environ, cwd=cwd, system_dir=system_dir
    )
    for doc in documents:
        if doc.errors:
            raise ConfigError(doc.errors[0])
    return Config(documents)


class Config:
    """The sources that were read, merged on demand: a key's value comes from the highest
    source that sets it (or its fallback key), else from its default."""

    __slots__ = ("documents",)

    def __init__(self, documents: list[Document]) -> None:
        self.documents = documents

    @property
    def warnings(self) -> list[str]:
        """One line each (unknown keys, ignored files); print them with the tool's prefix."""
        return [w for doc in self.documents for w in doc.warnings]

    def entry(self, key: str) -> Entry | None:
        """The entry that decides `key`: within one source the key itself beats its fallback;
        a higher source beats a lower one either way."""
        from patience.config.schema import KEYS, canonical

        name = canonical(key)
        if name is None:
            raise KeyError(key)
        fallback = KEYS[name].fallback
        for doc in reversed(self.documents):
            found = doc.entries.get(name)
            if found is None and fallback is not None:
                found = doc.entries.get(fallback)
            if found is not None:
                return found
        return None

    def get(self, key: str) -> object:
        """The effective value: durations as float seconds, None where unset with no default."""
        found = self.entry(key)
        if found is not None:
            return found.value
        from patience.config.schema import canonical, default

        return default(canonical(key) or key)

    def source(self, key: str) -> str:
        """Where the value came from: "default", "environment variable RPR_TIMEOUT", or
        "/path/config.toml: patience.defaults.max_attempts"."""
        found = self.entry(key)
        return "default" if found is None else found.where

    def is_set(self, key: str) -> bool:
        return self.entry(key) is not None

    def flag(self, key: str) -> bool:
        value = self.get(key)
        assert isinstance(value, bool), key
        return value

    def number(self, key: str) -> int:
        value = self.get(key)
        assert isinstance(value, int) and not isinstance(value, bool), key
        return value

    def seconds(self, key: str) -> float | None:
        value = self.get(key)
        assert value is None or isinstance(value, float), key
        return value

    def text(self, key: str) -> str | None:
        value = self.get(key)
        assert value is None or isinstance(value, str), key
        return value

    def fill(
        self, values: dict[str, object], explicit: Collection[str], mapping: Mapping[str, str]
    ) -> None:
        """Apply the configuration under the command line: for each `dest -> key` of
        `mapping`, set `values[dest]` when the user did not give that option (`dest` not in
        `explicit`, e.g. cliparse's Parsed.explicit) and some source sets the key.
        Unset keys leave the option's own default alone."""
        if not self.documents:  # the common start: nothing configured, nothing to load
            return
        for dest, key in mapping.items():
            if dest not in explicit:
                found = self.entry(key)
                if found is not None:
                    values[dest] = found.value

    def resource_entries(self) -> dict[str, Entry]:
        """Every configured resource limit (entries merged by id or pattern; a higher source
        replaces a lower one's entry whole)."""
        merged: dict[str, Entry] = {}
        for doc in self.documents:
            merged.update(doc.resources)
        return merged

    def alert_overrides(self) -> dict[str, dict[str, object]]:
        """`[alerting.resources]`: per id or pattern, the rule keys it overrides (a higher
        source replaces a lower one's entry whole)."""
        merged: dict[str, dict[str, object]] = {}
        for doc in self.documents:
            for pattern, found in doc.alert_resources.items():
                assert isinstance(found.value, dict)
                merged[pattern] = found.value
        return merged

    def limits(self) -> dict[str, ResourceLimit]:
        """Configured limits by id or pattern; an entry that names no algorithm takes
        `rate_limiting.default_algorithm`. An entry may have no limit, only its learning."""
        from patience.config.resources import ResourceLimit
        from patience.settings import Limit

        default = self.text("rate_limiting.default_algorithm")
        limits = {}
        for resource, found in self.resource_entries().items():
            entry = found.value
            assert isinstance(entry, ResourceLimit)
            limit = entry.limit
            if limit and default and isinstance(found.raw, dict) and "algorithm" not in found.raw:
                entry = ResourceLimit(
                    Limit(limit.count, limit.window, default), entry.fallback, entry.learning
                )
            limits[resource] = entry
        return limits

    def limit_for(self, resource_id: str) -> ResourceLimit | None:
        """The configured limit for one resource: exact id, else the most specific pattern."""
        from patience.config.resources import find_limit

        return find_limit(self.limits(), resource_id)
