# Bootstraps uv when the machine has only Python, then runs everything through it.
UV := $(shell command -v uv 2>/dev/null)
ifeq ($(UV),)
UV := .tools/bin/uv
endif

.PHONY: run demo test lint typecheck fmt sync

$(UV):
	python3 -m venv .tools && .tools/bin/pip install --quiet uv

sync: $(UV)
	$(UV) sync --locked --compile-bytecode

## Run the product on embedded defaults (SQLite, embedded Redis, the simulator),
## with three demo customers deploying, and open the operator TUI.
run: sync
	$(UV) run rachel-cloud up --demo 3

## Headless: deploy demo customers end to end and print their phase timings.
demo: sync
	$(UV) run rachel-cloud demo --customers 5

## Lint, type-check and run every test (what CI runs), in two pytest-xdist processes:
## the suite waits on real processes and sockets much of the time, so two take ~40% less.
test: sync lint typecheck
	$(UV) run pytest -n 2

lint: $(UV)
	$(UV) run ruff check .
	$(UV) run ruff format --check .

typecheck: $(UV)
	$(UV) run mypy

fmt: $(UV)
	$(UV) run ruff format .
	$(UV) run ruff check --fix .
