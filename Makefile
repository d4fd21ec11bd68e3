# Two entry points for a fresh clone with only Python 3.11+ and make:
#   make run   -> install, then `backorder dev` (embedded Temporal + PostgreSQL + worker)
#   make test  -> install, then lint, type-check and the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install clean bench compile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(MAKE) --no-print-directory compile
	touch $(STAMP)

# Bytecode for the venv and the project, written once here: this machine (and many containers)
# set PYTHONDONTWRITEBYTECODE=1, and without .pyc files the Temporal workflow sandbox compiles
# the workflows' modules again for every workflow it starts.
compile:
	$(BIN)/python -m compileall -q -j 0 -x '/\.(git|backorder)/' . >/dev/null

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

# Speed and memory against a trivial Temporal baseline measured in the same run (bench/README:
# what each figure is); writes bench-results/ (JSON and an HTML chart).
bench: $(STAMP)
	$(MAKE) --no-print-directory compile
	$(BIN)/python -m bench
