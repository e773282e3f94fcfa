"""The parse cache: a config file is parsed once, later starts skip tomllib/PyYAML, and the
cache can never serve stale or foreign data."""

from __future__ import annotations

import marshal
import os
import stat
from pathlib import Path

from patience.config import Config, load
from patience.config.cache import MISSING, ParseCache, cache_file
from test_config_startup import probe


def load_in(tmp_path: Path, environ: dict[str, str] | None = None) -> Config:
    env = {"HOME": str(tmp_path)} if environ is None else environ
    return load(environ=env, cwd=str(tmp_path), system_dir=str(tmp_path / "etc"))


def test_a_second_start_does_not_import_the_toml_parser(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("attempts = 4\n[patience]\ntimeout = '1s'\n")
    first = probe(tmp_path, {"HOME": str(tmp_path)})["modules"]
    second = probe(tmp_path, {"HOME": str(tmp_path)})["modules"]
    assert isinstance(first, list) and isinstance(second, list)
    assert "tomllib" in first
    assert "tomllib" not in second and "re" not in second
    assert "patience.config.schema" in second  # the values are still checked every time


def test_a_second_start_does_not_import_yaml(tmp_path: Path) -> None:
    # the probe uses its working directory as the system directory too
    (tmp_path / "config.yaml").write_text("tools:\n  patience:\n    max_attempts: 4\n")
    first = probe(tmp_path, {"HOME": str(tmp_path)})["modules"]
    second = probe(tmp_path, {"HOME": str(tmp_path)})["modules"]
    assert isinstance(first, list) and isinstance(second, list)
    assert "yaml" in first and "yaml" not in second


def test_changed_content_is_read_even_with_the_same_size_and_times(tmp_path: Path) -> None:
    path = tmp_path / ".patience.toml"
    path.write_text("attempts = 4\n")
    before = path.stat()
    assert load_in(tmp_path).get("patience.attempts") == 4
    path.write_text("attempts = 5\n")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size
    assert load_in(tmp_path).get("patience.attempts") == 5


def test_the_cache_is_private_to_the_user(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("attempts = 4\n")
    load_in(tmp_path)
    cache = Path(cache_file({"HOME": str(tmp_path)}))
    assert cache == tmp_path / ".cache" / "patience" / "parsed-config"
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700


def test_xdg_cache_home_is_honoured(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert cache_file(env) == str(tmp_path / "xdg" / "patience" / "parsed-config")
    (tmp_path / ".patience.toml").write_text("attempts = 4\n")
    load_in(tmp_path, env)
    assert (tmp_path / "xdg" / "patience" / "parsed-config").is_file()


def test_a_corrupt_cache_is_ignored_and_replaced(tmp_path: Path) -> None:
    cache = Path(cache_file({"HOME": str(tmp_path)}))
    cache.parent.mkdir(parents=True)
    cache.write_bytes(b"\x00garbage")
    (tmp_path / ".patience.toml").write_text("attempts = 4\n")
    assert load_in(tmp_path).get("patience.attempts") == 4
    _format, entries = marshal.loads(cache.read_bytes())
    assert list(entries) == [str(tmp_path / ".patience.toml")]


def test_a_cache_of_another_format_is_ignored(tmp_path: Path) -> None:
    cache = Path(cache_file({"HOME": str(tmp_path)}))
    cache.parent.mkdir(parents=True)
    project = str(tmp_path / ".patience.toml")
    content = b"attempts = 4\n"
    forged = (("patience-parsed-config", 0, 0), {project: (content, {"attempts": 9})})
    cache.write_bytes(marshal.dumps(forged))
    (tmp_path / ".patience.toml").write_bytes(content)
    assert load_in(tmp_path).get("patience.attempts") == 4


def test_an_unwritable_cache_location_only_means_parsing_again(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": str(blocker)}
    (tmp_path / ".patience.toml").write_text("attempts = 4\n")
    for _ in range(2):
        assert load_in(tmp_path, env).get("patience.attempts") == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == [".patience.toml", "not-a-dir"]


def test_values_marshal_cannot_hold_are_not_cached(tmp_path: Path) -> None:
    (tmp_path / ".patience.toml").write_text("attempts = 4\nwhen = 2024-01-01\n")
    config = load_in(tmp_path)
    assert config.get("patience.attempts") == 4
    assert not Path(cache_file({"HOME": str(tmp_path)})).exists()


def test_the_cache_remembers_a_bounded_number_of_files(tmp_path: Path) -> None:
    path = str(tmp_path / "cache")
    cache = ParseCache(path)
    for i in range(40):
        cache.put(f"/f{i}", b"x", {"i": i})
    cache.save()
    reread = ParseCache(path)
    assert reread.get("/f39", b"x") == {"i": 39}
    assert reread.get("/f23", b"x") is MISSING and reread.get("/f24", b"x") == {"i": 24}
    assert reread.get("/f39", b"y") is MISSING  # other bytes, other file
