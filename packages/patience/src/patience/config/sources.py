"""Where configuration comes from: the files and the environment variables.

Files: existence is checked with a stat first; tomllib (and PyYAML, for a YAML file) are
imported only when there is a file to read, so a start with no configuration costs a few
system calls and a few dictionary lookups. A file is read only if it is a regular file of at
most MAX_BYTES: a FIFO would block the start for ever and /dev/zero would fill the memory.

Environment: the rule, kept from the Go tools, is that `PATIENCE_<KEY>` sets `[patience] <key>`
and `RPR_<KEY>` sets `[repeater] <key>` (`PATIENCE_ATTEMPTS`, `RPR_TIMEOUT`, ...). Two are
shared by every tool and the daemon: `PATIENCE_DAEMON_SOCKET` sets `[daemon]
socket_path` and `PATIENCE_LOG_LEVEL` sets `[daemon] log_level`; `RPR_DAEMON_SOCKET` and
`RPR_LOG_LEVEL` override them for `rpr` (through the keys' fallbacks). An empty variable counts
as unset. The table is written out (a test checks it follows the rule for every key) so that
looking the variables up does not load the schema.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "CONFIG_FILE_VARIABLES",
    "MAX_BYTES",
    "PROJECT_NAMES",
    "SYSTEM_DIR",
    "SYSTEM_NAMES",
    "VARIABLES",
    "check_file",
    "config_file_variable",
    "existing",
    "exists",
    "project_files",
    "read",
    "read_bytes",
    "read_environment",
    "system_files",
    "user_files",
]

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from patience.config.cache import ParseCache
    from patience.config.layout import Document

MAX_BYTES = 1 << 20  # a configuration file is a few KiB; a larger one is the wrong file
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
