# Two entry points (see README): `make serve` runs the chat UI, `make test` runs every test.
# Both create .venv on first use with the CPU build of torch installed *before* the project,
# so pip never pulls the multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0

.PHONY: serve test lint unit install install-test chromium clean

$(BIN)/qa: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/qa
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/qa
install-test: $(VENV)/.test-deps

# Debian's Chromium for the browser tests (Playwright's own browser download is not used).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

serve: install
	$(BIN)/qa serve

lint: install-test
	$(BIN)/ruff check qa tests benchmarks
	$(BIN)/mypy

unit: install-test
	$(BIN)/python -m pytest -m "not model and not browser and not slow"

test: install-test chromium lint
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
