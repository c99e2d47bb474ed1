# Bootstraps uv when the machine has only Python, then runs everything through it.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif

.PHONY: run test lint typecheck fmt sync

$(UV):
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

sync: $(UV)
	$(UV) sync --locked

## Run the product on embedded defaults (SQLite, embedded Redis, the simulator).
run: sync
	$(UV) run rachel-cloud db upgrade
	$(UV) run rachel-cloud sim

## Lint, type-check and run every test (what CI runs).
test: sync lint typecheck
	$(UV) run pytest

lint: $(UV)
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: $(UV)
	$(UV) run mypy

fmt: $(UV)
	$(UV) run ruff format .
	$(UV) run ruff check --fix .
