# Two commands for a fresh machine (see README):
#   make sandbox   set everything up, then run the app locally against the built-in emulators
#   make test      set everything up, then run the quality gates and the whole test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
SANDBOX_ARGS ?=
# The single stream at Dataverse's pace takes ~2,000 s for 100,000 calls: time it on 10,000 (scaled).
BACKFILL_ARGS ?= --baseline-calls 10000

.PHONY: setup sandbox test lint bench clean

$(BIN)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

node_modules/.bin/azurite-table: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

setup: $(BIN)/.installed node_modules/.bin/azurite-table

sandbox: setup
	$(BIN)/python -m sandbox $(SANDBOX_ARGS)

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: setup lint
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python benchmarks/import_time.py
	$(BIN)/python benchmarks/routing.py
	$(BIN)/python benchmarks/call_sync.py
	$(BIN)/python benchmarks/enreach_queries.py
	$(BIN)/python benchmarks/cold_start.py
	$(BIN)/python benchmarks/backfill.py $(BACKFILL_ARGS)

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
