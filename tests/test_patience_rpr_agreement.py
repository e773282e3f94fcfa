"""`patience` and `rpr` read a strategy's parameters from one declaration (patience.backoff):
for every declared bound, both tools give the same verdict, with the same words.

The cases are made from the declarations themselves, so a parameter or bound added there is
checked here without touching this file."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from patience.backoff import DECLARATIONS, parameter_table
from patience.settings import Param
from repeater.modes import BACKOFF_MODES
from tools import PATIENCE, env, rpr, run

ROOT = Path(__file__).resolve().parent.parent


def _text(param: Param, value: float) -> str:
    return f"{value:g}{'s' if param.kind == 'duration' else ''}"


def bad_values(param: Param) -> list[str]:
    """Values just outside the bounds: the open low end itself, below the low end, above
    the high end."""
    if param.low is None:
        return []
    values = [_text(param, param.low - 1)]
    if param.low_open:
        values.append(_text(param, param.low))
    if param.high is not None:
        values.append(_text(param, param.high + 1))
    return values


def edge_values(param: Param) -> list[str]:
    """Values on the bounds that belong to them."""
    if param.low is None:
        return []
    edges = [] if param.low_open else [param.low]
    return [_text(param, v) for v in [*edges, *([] if param.high is None else [param.high])]]


def _cases(
    names: Iterable[str], values: Callable[[Param], list[str]]
) -> list[tuple[str, Param, str]]:
    return [
        (name, param, text)
        for name in names
        for param in DECLARATIONS[name].params
        for text in values(param)
    ]


def _id(case: tuple[str, Param, str]) -> str:
    name, param, text = case
    return f"{name} {param.flag} {text}"


def _patience(name: str, param: Param, text: str, state: Path | None = None) -> tuple[int, str]:
    extra = {"XDG_STATE_HOME": str(state)} if state else {}  # adaptive's memory
    r = run(PATIENCE, name, param.flag, text, "-a", "1", "--", "true", env=env(**extra))
    assert r.stdout == ""
    return r.returncode, r.stderr.removeprefix("patience: ")


def _rpr(name: str, param: Param, text: str) -> tuple[int, str]:
    first = DECLARATIONS[name].params[0]  # required by rpr
    required = [] if param is first else [first.flag, "1s"]
    r = rpr(name, *required, param.flag, text, "-a", "1", "--", "true")
    assert r.stdout == ""
    return r.returncode, r.stderr.removeprefix("rpr: ")


BAD_IN_BOTH = _cases(BACKOFF_MODES, bad_values)


@pytest.mark.parametrize(("name", "param", "text"), BAD_IN_BOTH, ids=map(_id, BAD_IN_BOTH))
def test_both_tools_refuse_a_value_out_of_bounds_alike(name: str, param: Param, text: str) -> None:
    """`patience poly --exponent 0` ran while `rpr poly --exponent 0` was refused; `patience
    exp --multiplier 150` was refused while rpr ran it. Now the same verdict and words."""
    code, said = _patience(name, param, text)
    assert (code, said) == _rpr(name, param, text)
    assert code == 2
    assert said.startswith(f"{param.flag}: ") and said.count("\n") == 1


EDGES = _cases(DECLARATIONS, edge_values)


@pytest.mark.parametrize(("name", "param", "text"), EDGES, ids=map(_id, EDGES))
def test_a_value_on_its_bound_is_accepted(
    name: str, param: Param, text: str, tmp_path: Path
) -> None:
    assert _patience(name, param, text, tmp_path)[0] == 0
    if name in BACKOFF_MODES:
        assert _rpr(name, param, text)[0] == 0


PATIENCE_ONLY = [n for n in DECLARATIONS if n not in BACKOFF_MODES]
BAD_IN_PATIENCE = _cases(PATIENCE_ONLY, bad_values)


@pytest.mark.parametrize(("name", "param", "text"), BAD_IN_PATIENCE, ids=map(_id, BAD_IN_PATIENCE))
def test_patience_refuses_every_declared_bound(name: str, param: Param, text: str) -> None:
    code, said = _patience(name, param, text)
    assert code == 2
    assert said.startswith(f"{param.flag}: ") and said.count("\n") == 1


@pytest.mark.parametrize("name", list(DECLARATIONS))
def test_help_states_each_parameter_as_declared(name: str) -> None:
    declaration = DECLARATIONS[name]
    helps = [run(PATIENCE, name, "--help").stdout]
    if name in BACKOFF_MODES:
        helps.append(rpr(name, "--help").stdout)
    for out in helps:
        assert declaration.summary in out
        lines = out.splitlines()
        for param in declaration.params:
            # The option's line (and the next, where a long name pushes the text down).
            at = next(
                i
                for i, line in enumerate(lines)
                if [w.rstrip(",") for w in line.split()[:1]] == [param.flag]
            )
            text = " ".join(lines[at : at + 2])
            assert param.help in text and param.bounds() in text


def test_the_docs_table_is_the_declarations() -> None:
    readme = (ROOT / "README.md").read_text()
    begin, end = "<!-- strategy-parameters: begin -->\n", "<!-- strategy-parameters: end -->"
    table = readme[readme.index(begin) + len(begin) : readme.index(end)]
    assert table == parameter_table(), (
        "README's strategy parameter table is out of date: replace it with the output of"
        " `.venv/bin/python -m patience.backoff`"
    )
