# Two commands for a newcomer: `make serve` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every developer and CI machine has PostgreSQL here with trust auth; without it the
# PostgreSQL tests skip (and fail instead when VERDICT_REQUIRE_PG=1, as CI sets).
export VERDICT_TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/test

.PHONY: serve demo test lint install install-dev bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

serve: $(VENV)/.installed
	$(BIN)/verdict serve $(ARGS)

demo: $(VENV)/.installed
	$(BIN)/verdict serve --demo $(ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Test worker processes (pytest-xdist); TEST_WORKERS=0 runs the suite in this one process.
# Tests marked xdist_group (one group shares a build directory) run on one worker.
TEST_WORKERS ?= 2

test: lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/load.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
