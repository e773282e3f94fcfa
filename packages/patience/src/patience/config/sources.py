"""Reading one configuration file, safely: it is read only if it is a regular file of at
most MAX_BYTES (a FIFO would block the start for ever and /dev/zero would fill the memory),
opened without blocking and checked on the same descriptor; then parsed as TOML (YAML for a
.yaml/.yml file) through the parse cache, and its layout read into a checked Document.
Imported only when a file is found (patience.config locates them) or named with --config:
tomllib and PyYAML are imported only to parse.
"""

from __future__ import annotations

import os
import stat

__all__ = ["MAX_BYTES", "check_file", "read", "read_bytes"]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from patience.config.cache import ParseCache
    from patience.config.layout import Document

MAX_BYTES = 1 << 20  # a configuration file is a few KiB; a larger one is the wrong file


def read(label: str, path: str, cache: ParseCache | None = None) -> Document:
    """Parse a file (YAML if it is named .yaml/.yml, else TOML) into a checked Document."""
    from patience.config.cache import MISSING
    from patience.config.layout import Document, read_document

    doc = Document(label, path)
    try:
        raw = read_bytes(path)
    except OSError as exc:
        doc.errors.append(f"{path}: cannot read ({exc.strerror})")
        return doc
    except ValueError as exc:
        doc.errors.append(f"{path}: cannot read ({exc})")
        return doc
    data = MISSING if cache is None else cache.get(path, raw)
    if data is MISSING:
        try:
            data = _parse(path, raw)
        except ValueError as exc:
            doc.errors.append(f"{path}: {exc}")
            return doc
        if cache is not None:
            cache.put(path, raw, data)
    read_document(doc, data)
    return doc


def read_bytes(path: str) -> bytes:
    """A configuration file's bytes. OSError when it cannot be opened; ValueError (saying
    why) when it is not a regular file or is over MAX_BYTES."""
    with open(_open_regular(path), "rb") as f:
        raw = f.read(MAX_BYTES + 1)
    if len(raw) > MAX_BYTES:  # it grew after the size was checked
        raise ValueError(_too_large(len(raw)))
    return raw


def check_file(path: str) -> None:
    """Raise as `read_bytes` would for a file that cannot be read, without reading it."""
    os.close(_open_regular(path))


def _open_regular(path: str) -> int:
    """Open without blocking (a FIFO with no writer would wait for one for ever), then look
    at what was opened: the checks and the read are on the same file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(_not_regular(info.st_mode))
        if info.st_size > MAX_BYTES:
            raise ValueError(_too_large(info.st_size))
    except ValueError:
        os.close(fd)
        raise
    return fd


def _not_regular(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "Is a directory"  # as the system says it
    kind = "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        kind = "a device"
    return f"{kind}, not a regular file; name a TOML or YAML file"


def _too_large(size: int) -> str:
    return (
        f"{size / (1 << 20):.1f} MiB, over the {MAX_BYTES >> 20} MiB a configuration file may"
        " have; is it the right file?"
    )


def _parse(path: str, raw: bytes) -> object:
    try:
        text = raw.decode()
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid UTF-8 (byte {exc.start})") from None
    return _yaml(text) if path.endswith((".yaml", ".yml")) else _toml(text)


def _toml(text: str) -> object:
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None


def _yaml(text: str) -> object:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        at = f" (at line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ValueError(f"not valid YAML: {problem}{at}") from None
