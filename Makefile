# dbcrate — the two quick-start commands are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
## what the install builds from: a change to any of them reinstalls (rebuilding the C
## extension, setup.py) on the next `make test` or `make demo`
BUILT  := pyproject.toml setup.py $(sort $(shell find src -name '*.c'))
HASH   := $(shell cat $(BUILT) | sha256sum | cut -c1-12)
RUN     = $(VENV)/.run-$(HASH)
STAMP   = $(VENV)/.test-$(HASH)

.PHONY: demo test lint typecheck unit deps system-deps azurite bench clean
AZURITE = .cache/azurite/node_modules/.bin/azurite-blob

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

## runtime dependencies only (what the demo needs)
$(RUN): $(BUILT) | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	$(BIN)/python -m compileall -q src >/dev/null
	rm -f $(VENV)/.run-* && touch $@

## runtime + test dependencies
$(STAMP): $(BUILT) | $(VENV)/bin/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test,server]'
	$(BIN)/python -m compileall -q src >/dev/null
	rm -f $(VENV)/.test-* $(VENV)/.run-* && touch $@ $(RUN)

deps: $(STAMP)

## system packages the tests use (age, zstd CLIs for interop); apt-get only when missing
system-deps:
	bash scripts/install-system-deps.sh

## Azurite (the Azure Blob emulator the azure target's tests run), project-local, from npm
$(AZURITE):
	npm install --no-save --no-audit --no-fund --prefix .cache/azurite azurite@3.37.0
azurite: $(AZURITE)

## quick start 1: embedded PostgreSQL -> backup (zstd + age) -> list -> restore -> compare
demo: $(RUN)
	$(BIN)/python scripts/demo.py

## quick start 2: lint, type-check and the whole test suite against real servers
test: system-deps $(STAMP) $(AZURITE)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports
	$(BIN)/mypy
	$(BIN)/pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

## benchmark: >= 1 GB per data set, dbcrate vs the raw tools (ratios, CPU per stage, peak
## RSS, S3 restore bytes); writes bench/results/latest.json, then the change per figure
## against the committed bench/baseline.json. BENCH_ARGS="--size-gb 4" for the RSS check.
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python bench/backup.py $(BENCH_ARGS)
	$(BIN)/python bench/compare.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build
	find src -name '*.so' -delete
