# Two entry points for a fresh clone with only Python 3.11+ and make:
#   make run   -> install, then `backorder dev` (embedded Temporal + PostgreSQL + worker)
#   make test  -> install, then lint, type-check and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/backorder dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .backorder .pytest_cache .mypy_cache .ruff_cache

# The reliability suite (tests/reliability) as a longer soak: every experiment with 10x the
# orders, receipts and cancels it runs in CI.
.PHONY: chaos
chaos: $(STAMP)
	BACKORDER_CHAOS_SCALE=10 $(BIN)/pytest tests/reliability
