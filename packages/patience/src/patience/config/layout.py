"""From a parsed file (or the environment) to checked entries under canonical key names.

The accepted layouts, all read the same way in every file:
- `[daemon]`, `[rate_limiting]`, `[rate_limiting.resources]`, `[repeater]`, `[patience]`;
- `[repeater.defaults]` and `[patience.defaults]` (another spelling of the same keys);
- `tools: {patience: ..., repeater: ...}` (the YAML system file's layout, docs/configuration.md);
- the Go `patience` file's flat top-level keys (`attempts = 5`), meaning `[patience]` ones;
- the Go `rpr` file's `[defaults]` and `[observability]`, meaning `[repeater]` ones.
One key set twice in one file (say `attempts` and `[patience] max_attempts`) is an error: the
file is ambiguous. Unknown keys are warnings.
"""

from __future__ import annotations

from patience.config import schema
from patience.config.resources import ResourceLimit
from patience.config.toml_text import key as toml_key
from patience.settings import DEFAULT_ALGORITHM, Limit

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


class Entry:
    """One checked value from one source. `raw` is the value as written (kept for
    `config migrate`); `name` the key or variable as written; `where` says both file and key."""

    __slots__ = ("key", "name", "raw", "value", "where")

    def __init__(self, key: str, value: object, raw: object, name: str, where: str) -> None:
        self.key, self.value, self.raw, self.name, self.where = key, value, raw, name, where


class Document:
    """What one source holds: entries by canonical key, resource limits by id or pattern,
    and one-line warnings and errors. `path` is None for the environment."""

    __slots__ = ("alert_resources", "entries", "errors", "label", "path", "resources", "warnings")

    def __init__(self, label: str, path: str | None) -> None:
        self.label, self.path = label, path
        self.entries: dict[str, Entry] = {}
        self.resources: dict[str, Entry] = {}
        self.alert_resources: dict[str, Entry] = {}  # [alerting.resources] (config/alerting.py)
        self.warnings: list[str] = []
        self.errors: list[str] = []

    def where(self, name: str) -> str:
        return f"{self.path}: {name}" if self.path else f"environment variable {name}"

    def setting(self, dotted: str, raw: object, name: str, from_text: bool = False) -> None:
        """Check and record one value for the key `dotted` (a key or alias name)."""
        key = schema.canonical(dotted)
        assert key is not None, dotted
        kind = schema.KEYS[key].kind
        where = self.where(name)
        try:
            value = kind.parse(str(raw)) if from_text else kind.check(raw)
        except ValueError as exc:
            self.errors.append(f"{where}: {exc}")
            return
        previous = self.entries.get(key)
        if previous is not None:
            self.errors.append(f"{where}: {key} is already set by {previous.name} (keep one)")
            return
        self.entries[key] = Entry(key, value, raw, name, where)


def read_document(doc: Document, data: object) -> None:
    """Walk a parsed file into `doc`."""
    if data is None:  # an empty YAML file
        return
    if not isinstance(data, dict):
        doc.errors.append(f"{doc.path}: expected a table of sections at the top level")
        return
    for top, value in data.items():
        name = str(top)
        if name in schema.SECTIONS:
            _section(doc, name, value, name)
        elif name == "tools":
            for tool, table in _table(doc, value, name).items():
                if tool in ("patience", "repeater"):
                    _section(doc, tool, table, f"tools.{tool}")
                else:
                    _unknown(doc, f"tools.{tool}", ["patience", "repeater"])
        elif name in schema.LEGACY_RPR_SECTIONS:
            allowed = schema.LEGACY_RPR_SECTIONS[name]
            for key, raw in _table(doc, value, name).items():
                if key in allowed:
                    doc.setting(f"repeater.{key}", raw, f"{name}.{key}")
                else:
                    _unknown(doc, f"{name}.{key}", list(allowed))
        elif name in schema.FLAT_KEYS:
            doc.setting(f"patience.{name}", value, name)
        else:
            _unknown(doc, name, [*schema.SECTIONS, "tools", *schema.FLAT_KEYS])


def _table(doc: Document, value: object, written: str) -> dict[str, object]:
    """A table's items with string keys; anything else is an error (and an empty table)."""
    if value is None:  # YAML `patience:` with nothing under it
        return {}
    if not isinstance(value, dict):
        doc.errors.append(f"{doc.where(written)}: expected a table, got {schema.shown(value)}")
        return {}
    return {str(k): v for k, v in value.items()}


_SUBTABLES = {
    "repeater": "defaults",
    "patience": "defaults",
    "rate_limiting": "resources",
    "alerting": "resources",
}


def _section(doc: Document, section: str, value: object, written: str, nested: bool = True) -> None:
    names = _names(section)
    sub = _SUBTABLES.get(section) if nested else None
    for key, raw in _table(doc, value, written).items():
        if key in names:
            doc.setting(f"{section}.{key}", raw, f"{written}.{key}")
        elif key == sub == "defaults":
            _section(doc, section, raw, f"{written}.defaults", nested=False)
        elif key == sub == "resources" and section == "alerting":
            from patience.config.alerting import read_overrides

            read_overrides(doc, raw, f"{written}.resources")
        elif key == sub == "resources":
            _resources(doc, raw, f"{written}.resources")
        else:
            _unknown(doc, f"{written}.{key}", [*names, *([sub] if sub else [])])


def _names(section: str) -> list[str]:
    """The key names (and aliases) a section accepts."""
    prefix = section + "."
    return [n[len(prefix) :] for n in (*schema.KEYS, *schema.ALIASES) if n.startswith(prefix)]


def _resources(doc: Document, value: object, written: str) -> None:
    """Each entry: `"id or pattern" = { limit = N, window = "1h", algorithm = "gcra" }`, with
    how its limit learns (`adaptive`, `decrease`, ...), or only that."""
    fields_known = {**schema.RESOURCE_FIELDS, **schema.LEARNING_FIELDS}
    for resource, fields in _table(doc, value, written).items():
        name = f"{written}.{toml_key(resource)}"
        if not resource:
            doc.errors.append(f'{doc.where(name)}: expected a resource id or pattern, got ""')
            continue
        table = _table(doc, fields, name)
        checked: dict[str, object] = {}
        for field, raw in table.items():
            kind = fields_known.get(field)
            if kind is None:
                _unknown(doc, f"{name}.{field}", list(fields_known))
                continue
            try:
                checked[field] = kind.check(raw)
            except ValueError as exc:
                doc.errors.append(f"{doc.where(f'{name}.{field}')}: {exc}")
        entry = _resource_limit(doc, name, table, checked, fields)
        if entry is not None:
            doc.resources[resource] = Entry(resource, entry, table, name, doc.where(name))


def _resource_limit(
    doc: Document, name: str, table: dict[str, object], checked: dict[str, object], fields: object
) -> ResourceLimit | None:
    """The entry's limit (limit and window, or neither) and learning; None after an error."""
    from patience.ratelimit.learned import Learning, LearningError

    missing = [f for f in ("limit", "window") if f not in table]
    limited = any(f in table for f in ("limit", "window", "algorithm", "fallback"))
    learning_only = not limited and any(f in table for f in schema.LEARNING_FIELDS)
    if missing and not learning_only and isinstance(fields, dict):
        example = '{ limit = 100, window = "1m" }'
        doc.errors.append(f"{doc.where(name)}: expected {' and '.join(missing)} ({example})")
        return None
    given: dict[str, Any] = {f: checked[f] for f in schema.LEARNING_FIELDS if f in checked}
    try:
        learned = Learning(**given)
    except LearningError as exc:
        doc.errors.append(f"{doc.where(name)}: {exc}")
        return None
    limit, window = checked.get("limit"), checked.get("window")
    algorithm, fallback = checked.get("algorithm"), checked.get("fallback")
    assert algorithm is None or isinstance(algorithm, str)
    assert fallback is None or isinstance(fallback, str)
    if isinstance(limit, int) and isinstance(window, float):
        counted = Limit(limit, window, algorithm or DEFAULT_ALGORITHM)
        return ResourceLimit(counted, fallback, learned)
    if missing and len(checked) == len(table):  # only learning fields, all of them good
        return ResourceLimit(None, None, learned)
    return None


def _unknown(doc: Document, name: str, known: list[str]) -> None:
    import difflib

    close = difflib.get_close_matches(name.rpartition(".")[2], known, n=1, cutoff=0.7)
    hint = f"; did you mean {close[0]}?" if close else ""
    doc.warnings.append(f"{doc.path}: unknown key {name} (ignored{hint})")
