# Two commands for a new machine (Python 3.11+ and make): `make serve` and `make test`.
# Everything installs from the hashed lock files in requirements/: the app and its tools into .venv,
# Phoenix (the tests' OTLP receiver, and `make phoenix`) into .phoenix.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock requirements/arize.lock pyproject.toml | cksum | cut -d' ' -f1)
# Phoenix (the OTLP receiver the tests export to, and `make phoenix` for a local UI) lives in its own
# venv so the app's install stays small.
PHOENIX_VENV ?= .phoenix
PHOENIX_STAMP := $(PHOENIX_VENV)/.installed-$(shell cat requirements/phoenix.lock | cksum | cut -d' ' -f1)
# INSTALLER=uv installs the same hashed locks with uv (bootstrapped into .tools/ from
# requirements/tools.lock): seconds where pip takes minutes. `make demo` uses it; pip stays the
# default of every other target, and the fallback (`make demo INSTALLER=pip`).
INSTALLER ?= pip
TOOLS ?= .tools
UV := $(TOOLS)/bin/uv
TOOLS_STAMP := $(TOOLS)/.installed-$(shell cat requirements/tools.lock | cksum | cut -d' ' -f1)
ifeq ($(INSTALLER),uv)
MKVENV = $(UV) venv --quiet --allow-existing --python $(PYTHON)
pip_install = $(UV) pip install --quiet --python $(1)
INSTALLER_DEPS = $(TOOLS_STAMP)
else
MKVENV = $(PYTHON) -m venv
pip_install = $(1) -m pip install --quiet
INSTALLER_DEPS =
endif

.PHONY: install install-phoenix phoenix serve test lint format bench lock clean demo

install: $(STAMP)

# arize (the tests read Arize's log record schema from it) goes beside site-packages, not in
# it: its arize/__init__.py would turn arize-otel's namespace package `arize` into a regular one.
$(STAMP): requirements/dev.lock requirements/arize.lock pyproject.toml | $(INSTALLER_DEPS)
	$(MKVENV) $(VENV)
	$(call pip_install,$(BIN)/python) --require-hashes --no-deps -r requirements/dev.lock
	rm -rf $(VENV)/arize-schema
	$(call pip_install,$(BIN)/python) --require-hashes --no-deps --target $(VENV)/arize-schema \
		-r requirements/arize.lock
	$(call pip_install,$(BIN)/python) --no-deps --no-build-isolation --editable .
	rm -f $(VENV)/.installed-*
	touch $@

install-phoenix: $(PHOENIX_STAMP)

$(PHOENIX_STAMP): requirements/phoenix.lock | $(INSTALLER_DEPS)
	$(MKVENV) $(PHOENIX_VENV)
	$(call pip_install,$(PHOENIX_VENV)/bin/python) --require-hashes --no-deps -r requirements/phoenix.lock
	rm -f $(PHOENIX_VENV)/.installed-*
	touch $@

# uv itself, from its hashed lock, in a small venv of its own.
$(TOOLS_STAMP): requirements/tools.lock
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --require-hashes --no-deps -r requirements/tools.lock
	rm -f $(TOOLS)/.installed-*
	touch $@

## One command to a linked experiment: installs with uv, starts Phoenix (127.0.0.1:6006) and the
## endpoint (127.0.0.1:8000), runs the sample dataset with two presets as two experiments with
## evaluators, prints the comparison and the Phoenix URLs of the comparison and of a trace, then
## stops what it started. KEEP=1 keeps both serving until Ctrl-C. DEMO_ARGS=--help for ports.
DEMO_INSTALLER = $(if $(filter file,$(origin INSTALLER)),uv,$(INSTALLER))
demo:
	$(MAKE) --no-print-directory install-phoenix INSTALLER=$(DEMO_INSTALLER)
	$(PYTHON) bench/demo.py --phoenix-venv $(abspath $(PHOENIX_VENV)) --python $(BIN)/python \
		--install "$(MAKE) --no-print-directory install INSTALLER=$(DEMO_INSTALLER)" \
		$(if $(KEEP),--keep) $(DEMO_ARGS)

## Phoenix in the foreground on 127.0.0.1: UI and OTLP/HTTP on http://127.0.0.1:6006 (/v1/traces),
## OTLP/gRPC on 127.0.0.1:4317; its database stays in .phoenix/data. Ctrl-C stops it.
phoenix: install-phoenix
	mkdir -p $(PHOENIX_VENV)/data
	PHOENIX_WORKING_DIR=$(abspath $(PHOENIX_VENV))/data PHOENIX_HOST=127.0.0.1 PHOENIX_PORT=6006 \
		PHOENIX_GRPC_PORT=4317 PHOENIX_TELEMETRY_ENABLED=$${PHOENIX_TELEMETRY_ENABLED:-false} \
		$(PHOENIX_VENV)/bin/phoenix serve

## Serve the endpoint with the offline example agent on 127.0.0.1:8000 (local dev: no auth
## unless AGENT_API_KEYS is set in the environment or .env).
serve: install
	AGENT_AUTH_DISABLED=$${AGENT_AUTH_DISABLED:-true} $(BIN)/agent-endpoint serve

## The whole suite: lint, format check, strict types, tests with coverage (against a real Phoenix).
test: install install-phoenix lint
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . .ci/probe
	$(BIN)/ruff format --check . .ci/probe
	$(BIN)/mypy
	$(BIN)/hadolint Dockerfile .ci/images/*.Dockerfile

format: install
	$(BIN)/ruff check --fix . .ci/probe
	$(BIN)/ruff format . .ci/probe

bench: install
	$(BIN)/python -m bench.invoke

## Coordinator rows/s vs wrk on a no-op endpoint, and its memory on 1M rows (BENCH_ARGS=--help).
.PHONY: bench-coordinator bench-jobs
bench-coordinator: install
	$(BIN)/python -m bench.coordinator $(BENCH_ARGS)

bench-jobs: install
	$(BIN)/python -m bench.jobs $(BENCH_ARGS)

## Re-pin requirements/*.lock from pyproject.toml (needs uv: `pip install uv`).
lock:
	uv pip compile pyproject.toml --group build --universal --python-version 3.11 --generate-hashes \
		--no-emit-index-url --no-emit-find-links -q -o requirements/app.lock
	uv pip compile pyproject.toml --group dev --universal --python-version 3.11 \
		--generate-hashes --no-emit-index-url --no-emit-find-links -q -o requirements/dev.lock
	uv pip compile requirements/phoenix.in --universal --python-version 3.11 --generate-hashes \
		--no-emit-index-url --no-emit-find-links -q -o requirements/phoenix.lock
	uv pip compile requirements/arize.in --no-deps --generate-hashes --no-emit-index-url \
		--no-emit-find-links --universal --python-version 3.11 -q -o requirements/arize.lock
	uv pip compile requirements/tools.in --universal --python-version 3.11 --generate-hashes \
		--no-emit-index-url --no-emit-find-links -q -o requirements/tools.lock

clean:
	rm -rf $(VENV) $(PHOENIX_VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache .coverage
