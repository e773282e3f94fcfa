"""`patience config show`: the effective configuration as TOML, each value with its source.

The output is itself a valid configuration file (unset keys are comments), so
`patience config show > config.toml` pins today's effective settings.
"""

from __future__ import annotations

from patience.config import schema
from patience.config.toml_text import key as toml_key
from patience.config.toml_text import value as toml_value

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.config import Config
    from patience.config.resources import ResourceLimit

_WIDTH = 44  # values are aligned up to this column, then the source follows


def render(config: Config) -> str:
    lines = ["# Effective configuration (patience config show)."]
    lines.append("# Sources, lowest precedence first: the defaults")
    for doc in config.documents:
        if doc.path is not None:
            lines.append(f"#   then the {doc.label}: {doc.path}")
        else:
            names = ", ".join(entry.name for entry in doc.entries.values())
            lines.append(f"#   then the environment: {names}")
    lines.append("#   then each tool's command-line flags, which beat all of these.")
    for section in schema.SECTIONS:
        lines += ["", f"[{section}]"]
        prefix = section + "."
        for name in schema.KEYS:
            if name.startswith(prefix):
                key = name[len(prefix) :]
                lines.append(_line(key, config.get(name), config.source(name), name))
        if section == "rate_limiting":
            lines += _resources(config)
    return "\n".join(lines) + "\n"


def _line(key: str, value: object, source: str, name: str) -> str:
    if value is None:
        return f"# {key} is not set ({source})"
    text = f"{key} = {schema.render(name, value)}"
    return f"{text:{_WIDTH}} # {source}"


def _resources(config: Config) -> list[str]:
    entries = config.resource_entries()
    if not entries:
        return ["", "# [rate_limiting.resources]: none configured"]
    lines = ["", "[rate_limiting.resources]"]
    for resource, limit in config.limits().items():
        text = f"{toml_key(resource)} = {toml_value(_fields(limit))}"
        lines.append(f"{text:{_WIDTH}} # {entries[resource].where}")
    return lines


def _fields(limit: ResourceLimit) -> dict[str, object]:
    from patience.durations import format_duration

    fields: dict[str, object] = {}
    if limit.limit is not None:
        fields["limit"] = limit.limit.count
        fields["window"] = format_duration(limit.limit.window)
        fields["algorithm"] = limit.limit.algorithm
    if limit.fallback is not None:
        fields["fallback"] = limit.fallback
    learning, default = limit.learning, type(limit.learning)()
    for name in learning.__slots__:  # how it learns, where it differs from the default
        if getattr(learning, name) != getattr(default, name):
            fields[name] = getattr(learning, name)
    return fields
