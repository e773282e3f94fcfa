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

This module is the front door and is loaded on every start, so it imports nothing but `os`
and `sources`; the schema, the parsers (tomllib, PyYAML) and the layout rules are
imported only when a file or variable is found. docs/configuration.md is the user's guide.
"""

from __future__ import annotations

import os

from patience.config import sources

__all__ = ["Config", "ConfigError", "gather", "load"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Collection, Mapping

    from patience.config.layout import Document, Entry
    from patience.config.resources import ResourceLimit


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
        system_dir = environ.get("PATIENCE_SYSTEM_CONFIG_DIR") or sources.SYSTEM_DIR
    located = [
        ("system file", sources.existing(sources.system_files(system_dir))),
        ("user file", sources.existing(sources.user_files(environ))),
        ("project file", sources.existing(sources.project_files(cwd))),
    ]
    named = sources.config_file_variable(tool, environ)
    if config_file:
        named = ("--config", config_file)
    if named:
        path = os.path.expanduser(named[1])
        if not sources.exists(path):
            raise ConfigError(f"{named[0]}: {path}: no such file")
        located.append(("explicit file", [path]))
    documents = _read_files([(label, paths) for label, paths in located if paths], environ)
    env = sources.read_environment(environ)
    return documents if env is None else [*documents, env]


def _read_files(located: list[tuple[str, list[str]]], environ: Mapping[str, str]) -> list[Document]:
    """Read the first of each source's files through the parse cache; warn about the rest."""
    if not located:
        return []
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
