# Two commands on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev
# Three workers on two cores: a good part of every test waits on processes it started (model
# servers, browsers, S3, Ray); work stealing keeps the slow ones from ending in one queue.
PYTEST_WORKERS ?= 3
# This sandbox exports PYTHONDONTWRITEBYTECODE=1, so every Python process (each test's server,
# CLI run and MLflow client) would compile every module it imports from source, every time: about
# 2 s of CPU per server start and 4 s per MLflow import. Let recipes cache bytecode.
unexport PYTHONDONTWRITEBYTECODE
TEST_STORE_PG ?= s3
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: install dev serve test test-sqlite test-postgres lint format bench screenshots reliability clean

# --no-compile: no byte-compiling of every installed module up front (a minute of CPU on 2 cores
# for torch, ray and the rest); Python compiles and caches what is imported.
$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-compile -e .
	touch $@

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --no-compile -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

dev: $(STAMP)

serve: install
	$(BIN)/podstack server --host $(HOST) --port $(PORT)

# The whole suite on SQLite, then again on PostgreSQL where the database is part of what a test
# checks: tests marked `one_db` (browser, CLI, SDK client side, model server; see
# tests/conftest.py) run in the SQLite pass only, `postgres_only` ones in the PostgreSQL pass.
# The SQLite pass keeps artifacts in a local folder; the PostgreSQL pass in a bucket of the
# suite's own SeaweedFS (the production pairing), and runs the SDK's artifact, registry and
# deployment tests too. TEST_STORE_PG=local keeps that pass on a local folder.
# The test dependencies outside .venv (MLflow's venv, Chromium, the OpenID provider) install
# while .venv is built: both wait mostly on downloads and unpacking.
test:
	@PY=$(PY) bash scripts/ensure-test-deps.sh & deps=$$!; \
	$(MAKE) --no-print-directory dev; dev=$$?; wait $$deps && exit $$dev
	$(MAKE) --no-print-directory test-sqlite test-postgres

test-sqlite: dev
	PODSTACK_TEST_DB=sqlite $(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal -q $(PYTEST_ARGS)

test-postgres: dev
	PODSTACK_TEST_DB=postgresql PODSTACK_TEST_STORE=$(TEST_STORE_PG) $(BIN)/pytest -n $(PYTEST_WORKERS) --dist worksteal -q $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: dev
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Every module in benchmarks/ (the MLflow 3.17.2 comparison, whose venv benchmarks/.mlflow-venv
# is installed on first use; artifact transfer; registry search; UI pages), then elapsed time per
# section and the total (budget: 15 minutes on a fresh clone). The artifact transfer moves 256 MiB;
# PODSTACK_BENCH_ARTIFACT_MB=2048 for issue 2's 2 GiB figure. BENCH_QUICK=1 for small sizes.
bench: dev
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) .pytest_cache build dist

# Crash, load and replica runs with the long profile (32 clients for 90 s; wider replica races),
# on PostgreSQL then SQLite, one test at a time so the load figures are the server's alone.
# `make test` runs the same tests with the short profile. Figures: test-artifacts/reliability/.
reliability: dev
	bash scripts/ensure-test-deps.sh
	PODSTACK_TEST_DB=postgresql PODSTACK_RELIABILITY_PROFILE=long $(BIN)/pytest -n 0 -q -m reliability $(PYTEST_ARGS)
	PODSTACK_TEST_DB=sqlite PODSTACK_RELIABILITY_PROFILE=long $(BIN)/pytest -n 0 -q -m reliability $(PYTEST_ARGS)

# PNGs of the main UI pages, filled by `podstack demo` in a temporary home, into docs/screenshots/
# (needs Debian's chromium; scripts/ensure-test-deps.sh installs it).
screenshots: dev
	bash scripts/ensure-test-deps.sh
	$(BIN)/python scripts/screenshots.py
