# Two commands for a new machine (Python 3.11+ and make): `make serve` and `make test`.
# Everything installs into .venv from the hashed lock files in requirements/.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements/dev.lock pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install serve test lint format bench lock clean

install: $(STAMP)

$(STAMP): requirements/dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes --no-deps -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	rm -f $(VENV)/.installed-*
	touch $@

## Serve the endpoint with the offline example agent on 127.0.0.1:8000 (local dev: no auth
## unless AGENT_API_KEYS is set in the environment or .env).
serve: install
	AGENT_AUTH_DISABLED=$${AGENT_AUTH_DISABLED:-true} $(BIN)/agent-endpoint serve

## The whole suite: lint, format check, strict types, tests with coverage.
test: install lint
	$(BIN)/python -m pytest --cov --cov-report=term $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m bench.invoke

## Coordinator rows/s vs wrk on a no-op endpoint, and its memory on 1M rows (BENCH_ARGS=--help).
.PHONY: bench-coordinator
bench-coordinator: install
	$(BIN)/python -m bench.coordinator $(BENCH_ARGS)

## Re-pin requirements/*.lock from pyproject.toml (needs uv: `pip install uv`).
lock:
	uv pip compile pyproject.toml --group build --universal --python-version 3.11 --generate-hashes \
		--no-emit-index-url --no-emit-find-links -q -o requirements/app.lock
	uv pip compile pyproject.toml --group dev --universal --python-version 3.11 \
		--generate-hashes --no-emit-index-url --no-emit-find-links -q -o requirements/dev.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .coverage
