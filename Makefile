# Every target builds its own virtual environment, so a fresh clone needs only Python 3.11+.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test lint typecheck venv bench bench-core bench-echo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## The main demo: the seeds' examples, running concurrently on one thread.
demo: $(STAMP)
	$(BIN)/python examples/demo.py

## The default test suite (fast), plus lint and type checks.
test: $(STAMP)
	$(BIN)/python -m ruff check src tests examples benchmarks
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests examples benchmarks

typecheck: $(STAMP)
	$(BIN)/python -m mypy

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(VENV)/.bench

bench-core: $(VENV)/.bench
	$(BIN)/python benchmarks/core.py

bench-echo: $(VENV)/.bench
	$(BIN)/python benchmarks/echo.py --markdown benchmarks/echo-results.md

bench: bench-core bench-echo

clean:
	rm -rf .venv .venv-* build dist src/*.egg-info
