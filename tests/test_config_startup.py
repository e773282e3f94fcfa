"""Loading the configuration is on every start of `rpr` and `patience`: with nothing
configured it imports no parser, no schema and no `re` (its cost in time is measured by
the start-up benchmarks, not here: timed assertions fail on a noisy shared machine)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import patience.cliparse, patience.durations  # every tool has these already
before = set(sys.modules)
import patience.config
config = patience.config.load(environ=ENVIRON, cwd=CWD, system_dir=CWD)
config.fill({}, set(), {"attempts": "patience.attempts"})
added = sorted(set(sys.modules) - before)
import json
print(json.dumps({"modules": added}))
"""


def probe(tmp_path: Path, environ: dict[str, str]) -> dict[str, object]:
    code = PROBE.replace("ENVIRON", repr(environ)).replace("CWD", repr(str(tmp_path)))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    result: dict[str, object] = json.loads(out)
    return result


def test_nothing_configured_imports_only_the_front_door(tmp_path: Path) -> None:
    environ = {"HOME": str(tmp_path), "RPR_ITERATION": "3", "PATH": "/usr/bin"}
    result = probe(tmp_path, environ)
    assert result["modules"] == ["patience.config"]  # the file reader only when a file is found


def test_a_toml_file_loads_tomllib_but_not_yaml(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("attempts = 4\n")
    modules = probe(tmp_path, {"HOME": str(tmp_path)})["modules"]
    assert isinstance(modules, list)
    assert "tomllib" in modules and "yaml" not in modules


def test_a_variable_loads_the_schema_but_no_parser(tmp_path: Path) -> None:
    modules = probe(tmp_path, {"HOME": str(tmp_path), "PATIENCE_ATTEMPTS": "4"})["modules"]
    assert isinstance(modules, list)
    assert "patience.config.schema" in modules
    assert "tomllib" not in modules and "yaml" not in modules
