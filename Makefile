# The two commands of the README: `make run` and `make test`. Everything they
# need is installed here, so a fresh machine and CI behave the same.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_LINK_MODE := copy
# Every `lockgate` process a test starts (servers, workers, the CLI) imports
# the whole fleet: with the bytecode cache off (some CI images set this) each
# one compiles ~230 modules again, 3.5 s of CPU. The dependencies are compiled
# at install time; our own sources are cached as they are imported.
unexport PYTHONDONTWRITEBYTECODE
PYTHON ?= python3
UV := .tools/bin/uv
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080

.PHONY: run up test setup lint typecheck api-guard deploy-guard pytest bench bench-tools system-packages wrk fmt clean

run: setup ## set up and start the fleet at http://$(HOST):$(PORT)
	$(BIN)/lockgate run --host $(HOST) --port $(PORT)

# The production topology on one machine: nginx in front of every replica.
up: setup system-packages ## nginx at http://$(HOST):$(PORT) in front of each service's replicas
	$(BIN)/lockgate up --host $(HOST) --port $(PORT)

test: setup system-packages lint typecheck api-guard deploy-guard pytest ## set up and run every check and test

setup: $(VENV)/.synced

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet 'uv>=0.13,<0.14'

$(VENV)/.synced: $(UV) pyproject.toml uv.lock
	$(UV) sync --frozen --all-extras --compile-bytecode --python $(PYTHON)
	touch $@

# Debian packages the tests start or drive: chromium for the docs page tests
# (Playwright cannot download a browser here), memcached for the cache tests,
# nginx for the gateway's (nginx -t, and a real edge in front of the fleet).
SYSTEM_PACKAGES := chromium memcached nginx
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

# wrk drives the HTTP benchmarks.
wrk:
	@command -v wrk >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk >/dev/null; }

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/hadolint Dockerfile

typecheck: setup
	$(BIN)/mypy

# No commit may break a released version: every released version of every
# service against its snapshot in openapi/ (lockgate openapi --out writes one).
api-guard: setup
	$(BIN)/lockgate diff --all

# The deployment files under deploy/ are rendered from fleet.toml and never
# edited: they must be what `lockgate deploy render` makes of it now.
deploy-guard: setup
	$(BIN)/lockgate deploy render --target kubernetes --out deploy/k8s --check
	$(BIN)/lockgate deploy render --target compose --out deploy/compose --check

# Two workers, one file each at a time: the server suites (serving, the fleet,
# schemathesis) wait on subprocesses, so they overlap well with the rest.
PYTEST_WORKERS ?= 2
pytest: setup
	mkdir -p .lockgate
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --junitxml=.lockgate/junit.xml $(PYTEST_ARGS)

# The peers of the serving benchmark (bench/peers/) come from the bench group,
# never installed by `make setup`; the stamp goes so the next setup drops them.
bench: setup wrk bench-tools ## benchmarks; figures go to docs/benchmarks.md
	$(UV) sync --frozen --all-extras --compile-bytecode --group bench --python $(PYTHON)
	rm -f $(VENV)/.synced
	$(BIN)/python bench/versioning.py --write docs/benchmarks.md
	$(BIN)/python bench/changes.py --write docs/benchmarks.md
	$(BIN)/python bench/auth.py --write docs/benchmarks.md
	$(BIN)/python bench/orders.py --write docs/benchmarks.md
	$(BIN)/python bench/jobs.py --write docs/benchmarks.md
	$(BIN)/python bench/serving.py --write docs/benchmarks.md
	$(BIN)/python bench/gateway.py --write docs/benchmarks.md

# valgrind, its headers and a C compiler: bench/versioning.py counts
# instructions under callgrind, started and stopped by bench/callgrind_toggle.c.
bench-tools:
	@{ command -v valgrind && command -v cc && test -f /usr/include/valgrind/callgrind.h; } >/dev/null || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq valgrind gcc >/dev/null; }

fmt: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf .venv .tools .lockgate .pytest_cache .mypy_cache .ruff_cache
