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

# A real demo: rpr on time, then rpr + patience where each run succeeds on its third attempt.
demo: $(STAMP)
	$(BIN)/rpr interval --every 200ms --times 5 --verbose -- \
	  sh -c 'echo "tick $$RPR_ITERATION at $$(date +%T.%N | cut -c1-12)"'
	d=$$(mktemp -d) && trap 'rm -rf "$$d"' EXIT && \
	$(BIN)/rpr count --times 3 --every 1s -- \
	  $(BIN)/patience exponential --base-delay 100ms --attempts 5 -- \
	  sh -c 'f="$$0.$$RPR_ITERATION"; n=$$(($$(cat "$$f" 2>/dev/null || echo 0) + 1)); \
	         echo $$n > "$$f"; echo "run $$RPR_ITERATION, attempt $$n"; test $$n -ge 3' "$$d/n"

# The tests marked `alone` (the 72-process fleet test) run after the rest: beside them they
# starve the timing-sensitive tests.
test: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -n auto -q -m "not alone"
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q -m alone

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
