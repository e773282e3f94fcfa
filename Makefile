# The two commands of the README: `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test lint bench clean

$(STAMP): packages/patience/pyproject.toml packages/repeater/pyproject.toml requirements-dev.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e packages/patience -e packages/repeater -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/rpr interval --every 200ms --times 5 --verbose -- sh -c 'echo "tick $$RPR_ITERATION at $$(date +%T.%N | cut -c1-12)"'
	$(BIN)/rpr count --times 3 -- $(BIN)/patience fixed --delay 100ms --attempts 3 -- sh -c 'test $$RPR_ITERATION -ne 2'

test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n auto -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Byte-compile first: PYTHONDONTWRITEBYTECODE may be set, and start-up is measured.
bench: $(STAMP)
	$(BIN)/python -m compileall -q packages/patience/src packages/repeater/src >/dev/null
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
