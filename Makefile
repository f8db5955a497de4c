# zapgate — the two set-up commands: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# pytest-xdist workers for `make test` (the suite mostly waits on servers and clocks: 4 suit 2 cores);
# PYTEST_WORKERS=0 runs it serially in one process. See DEVELOPERS.md "Parallel test runs".
PYTEST_WORKERS ?= 4
BENCH_ARGS ?=

.PHONY: run test lint bench clean help

help:
	@echo "make run    create .venv, install zapgate, serve it on the embedded PostgreSQL (sandbox on)"
	@echo "make test   install the dev dependencies and run the whole test suite"
	@echo "make lint   ruff check"

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "zapgate needs Python >= 3.11 (set PYTHON=...)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install --quiet -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[dev]"
	@touch $@

run: $(VENV)/.installed
	ZAPGATE_SANDBOX=$${ZAPGATE_SANDBOX:-on} $(BIN)/zapgate serve

REALTIME_CLIENT := tests/e2e/realtime

test: $(VENV)/.installed-dev $(REALTIME_CLIENT)/node_modules/.installed
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) $(PYTEST_ARGS)

# The stock npm socket.io-client that the realtime tests drive (skipped, as those tests are, without npm).
$(REALTIME_CLIENT)/node_modules/.installed: $(REALTIME_CLIENT)/package.json $(REALTIME_CLIENT)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(REALTIME_CLIENT) && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: the realtime end-to-end tests will be skipped"; fi

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .

# every benchmark in quick mode (each under 2 minutes); writes bench/RESULTS.md
bench: $(VENV)/.installed
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info
