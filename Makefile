# The two commands a newcomer needs are `make demo` and `make test`; the rest are parts of them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help venv tools up down status demo test test-unit test-integration lint schemas bench bench-timers clean

help:
	@echo "make demo    run Kafka, Redis, a worker and a traffic simulator; watch commands flow"
	@echo "make test    set everything up, then run every test"
	@echo "make up | down | status   the local Kafka + Redis stack"
	@echo "make lint    ruff and mypy"
	@echo "make bench   performance figures (decide, replay, timer index, a live worker, HTTP API)"

# The virtual environment, rebuilt when pyproject.toml changes.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python >= 3.11" >&2; exit 1; }
	@echo "==> creating virtual environment and installing dependencies (first run takes a minute)"
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install --quiet --upgrade pip
	@$(BIN)/pip install --quiet --progress-bar off -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)

# Debian tools the tests use: kcat publishes like a channel team would, promtool checks /metrics.
tools:
	@bash deploy/local/tools.sh kcat promtool

up:
	@bash deploy/local/stack.sh up

down:
	@bash deploy/local/stack.sh down

status:
	@bash deploy/local/stack.sh status

demo: venv up
	@bash deploy/local/demo.sh

test: venv tools up
	@$(BIN)/pytest

test-unit: venv
	@$(BIN)/pytest tests/unit

test-integration: venv tools up
	@$(BIN)/pytest tests/integration

lint: venv
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check .
	@$(BIN)/mypy

bench: venv up
	@$(BIN)/python bench/run.py
	@$(BIN)/python bench/live.py
	@$(BIN)/python bench/api.py

# Timers on a live worker (issue 3): 1,000,000 pending waits, lateness under load. Minutes, so
# not part of `make bench`; pass options with ARGS, e.g. make bench-timers ARGS=--quick
bench-timers: venv up
	@$(BIN)/python bench/timers_live.py $(ARGS)

schemas: venv
	@$(BIN)/python -m schemas.generate

clean:
	@bash deploy/local/stack.sh down --purge || true
	rm -rf $(VENV) .cache .pytest_cache .mypy_cache .ruff_cache *.egg-info
