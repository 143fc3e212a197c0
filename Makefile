# Runstream's one task runner. The README's two commands are `make demo` and `make test`;
# each sets up what it needs first (scripts/setup.sh is idempotent and fast when nothing changed).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf

# `make serve` listens here; override on the command line: make serve ADDRESS=0.0.0.0:50051
ADDRESS ?= 127.0.0.1:50051
STORE ?= runstream.db
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x tests/contract"
PYTEST_ARGS ?=

.PHONY: help setup setup-demo gen lint test demo bench serve clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-11s %s\n", $$1, $$2}'

setup: ## Install everything the tests and tools need (.venv with extras, buf from npm).
	scripts/setup.sh test

setup-demo: ## Install the package alone, enough for the demo and the server.
	scripts/setup.sh demo

gen: setup ## Regenerate the Python code in src/clients/python/runstream/v1 from protos/.
	scripts/gen.sh

lint: setup ## ruff check, ruff format --check, mypy --strict (src, not generated code), buf lint.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src/clients/python/runstream src/server/runstream_server
	$(BUF) lint

test: setup ## Set up everything the tests need, then run the whole test suite.
	$(VENV)/bin/pytest $(PYTEST_ARGS)

demo: setup-demo ## Set up, then run the live terminal demo on an embedded server.
	$(VENV)/bin/runstream demo

bench: setup ## Run the benchmarks side by side (bench/run.py; figures, not pass/fail).
	$(PY) bench/run.py

serve: setup-demo ## Run a server on $(ADDRESS) with the SQLite store $(STORE).
	$(VENV)/bin/runstream serve --address $(ADDRESS) --store $(STORE)

clean: ## Remove caches and build output (keeps .venv and node_modules).
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache test-artifacts
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	  -name __pycache__ -type d -exec rm -rf {} +
