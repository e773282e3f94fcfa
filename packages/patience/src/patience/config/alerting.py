"""`[alerting.resources."<pattern>"]`: per-resource overrides of the [alerting] rule keys,
`"api:*" = { exhaustion_utilisation = 0.8, min_hold = "5m" }`. Each field is checked as its
[alerting] key is; the fields an entry may set are the rules' (not command, webhook or
degradation_window, which hold for the whole daemon)."""

from __future__ import annotations

from patience.config import schema
from patience.config.layout import Document, Entry, _table, _unknown
from patience.config.toml_text import key as toml_key

__all__ = ["FIELDS", "GLOBAL_ONLY", "read_overrides"]

# Keys that hold for the whole daemon; every other [alerting] key may be set per resource.
GLOBAL_ONLY = ("command", "webhook", "degradation_window")
FIELDS = tuple(
    name.removeprefix("alerting.")
    for name in schema.KEYS
    if name.startswith("alerting.") and name.removeprefix("alerting.") not in GLOBAL_ONLY
)


def read_overrides(doc: Document, value: object, written: str) -> None:
    for pattern, fields in _table(doc, value, written).items():
        name = f"{written}.{toml_key(pattern)}"
        if not pattern:
            doc.errors.append(f'{doc.where(name)}: expected a resource id or pattern, got ""')
            continue
        checked: dict[str, object] = {}
        table = _table(doc, fields, name)
        for field, raw in table.items():
            if field not in FIELDS:
                _unknown(doc, f"{name}.{field}", list(FIELDS))
                continue
            try:
                checked[field] = schema.KEYS[f"alerting.{field}"].kind.check(raw)
            except ValueError as exc:
                doc.errors.append(f"{doc.where(f'{name}.{field}')}: {exc}")
        doc.alert_resources[pattern] = Entry(pattern, checked, table, name, doc.where(name))
