"""`patience config migrate`: an old configuration file in the sectioned format.

The old Go `patience` file is flat (`attempts = 5`); its keys move under `[patience]`, except
`daemon_socket`, which becomes the shared `[daemon] socket_path` (one daemon serves both
tools). Go `rpr` files (`[defaults]`, `[observability]`) move under `[repeater]`, and any
file in another accepted layout (YAML `tools:`, `[patience.defaults]`, aliases such as
`max_attempts`) comes out in the canonical one. Values keep the spelling the user wrote
("90s" stays "90s"), except choices, which take their canonical spelling. Suggested `[repeater]`
defaults are added as comments: enabling the daemon for `rpr` is the user's decision.
"""

from __future__ import annotations

from patience.config import ConfigError, schema, sources
from patience.config.toml_text import key as toml_key
from patience.config.toml_text import value as toml_value

__all__ = ["migrate", "render"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.config.layout import Document, Entry

_REPEATER_SUGGESTION = """\
# rpr reads [repeater]. Suggested defaults, commented out so that migrating does
# not change what rpr does; uncomment the ones you want:
# [repeater]
# default_interval = "30s"
# default_timeout = "60s"
# continue_on_error = true
# daemon_enabled = true
# resource_detection = true
"""


def migrate(old_path: str) -> tuple[str, list[str]]:
    """The new file's text and the warnings (keys that were not migrated). Raises ConfigError
    when the old file cannot be read or holds a bad value. The old file is only read."""
    doc = sources.read("old file", old_path)
    if doc.errors:
        raise ConfigError(doc.errors[0])
    text = render(doc, old_path)
    _check(text, old_path)
    warnings = [w.replace("(ignored", "(not migrated", 1) for w in doc.warnings]
    return text, warnings


def render(doc: Document, old_path: str) -> str:
    import os.path

    entries = dict(doc.entries)
    moved = entries.get("patience.daemon_socket")
    if moved is not None and "daemon.socket_path" not in entries:
        del entries["patience.daemon_socket"]
        entries["daemon.socket_path"] = moved
    lines = [
        f"# Migrated from {os.path.abspath(old_path)} by `patience config migrate`.",
        "# Shared by rpr, patience and patience-daemon; see docs/configuration.md.",
    ]
    for section in schema.SECTIONS:
        prefix = section + "."
        chosen = [n for n in schema.KEYS if n.startswith(prefix) and n in entries]
        if chosen:
            lines += ["", f"[{section}]"]
            lines += [f"{n[len(prefix) :]} = {toml_value(_written(entries[n]))}" for n in chosen]
        if section == "rate_limiting" and doc.resources:
            lines += ["", "[rate_limiting.resources]"]
            for resource, entry in doc.resources.items():
                lines.append(f"{toml_key(resource)} = {toml_value(_resource(entry))}")
    text = "\n".join(lines) + "\n"
    if not any(name.startswith("repeater.") for name in entries):
        text += "\n" + _REPEATER_SUGGESTION
    return text


def _written(entry: Entry) -> object:
    """The value as the user wrote it; a choice in its canonical spelling."""
    kind = schema.KEYS[entry.key].kind
    return entry.value if isinstance(kind, schema.Choice | schema.Strategy) else entry.raw


def _resource(entry: Entry) -> dict[str, object]:
    assert isinstance(entry.raw, dict)
    fields = (*schema.RESOURCE_FIELDS, *schema.LEARNING_FIELDS)
    return {f: entry.raw[f] for f in fields if f in entry.raw}


def _check(text: str, old_path: str) -> None:
    """The new text must load cleanly; anything else is a bug here, not the user's."""
    import tomllib

    from patience.config.layout import Document, read_document

    check = Document("migrated file", f"{old_path} (migrated)")
    read_document(check, tomllib.loads(text))
    problems = check.errors + check.warnings
    if problems:
        raise AssertionError(f"migrated text does not re-validate: {problems[0]}")
