# dsfleet — every target does its own set-up (virtualenv, pip install, system packages).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SYSSTAMP := .dsfleet/.system-deps-stamp

.PHONY: demo test test-fast lint docs bench system-deps clean help stub-image lock

help:
	@echo "make demo   - the live loop on this machine: broker, coordinator, agents, containers (dsfleet demo)"
	@echo "make test   - lint, type-check, import contracts, the docs build, unit + integration tests"
	@echo "make bench  - benchmarks (results go to benchmarks/out/, summary in BENCHMARKS.md)"
	@echo "make lint   - ruff, mypy --strict, import-linter only"
	@echo "make docs   - the manual: mkdocs build --strict into site/ (reference pages generated from the code)"
	@echo "make lock   - pin the Python dependencies with hashes in requirements/*.lock (after changing pyproject.toml)"
	@echo "make stub-image - build the stand-in DeepStream image dsfleet/deepstream-stub:latest (docker import)"

$(SYSSTAMP): scripts/setup-system.sh
	@bash scripts/setup-system.sh
	@mkdir -p $(dir $@) && touch $@

system-deps: $(SYSSTAMP)

$(STAMP): pyproject.toml requirements/dev.lock $(SYSSTAMP)
	@bash scripts/check-python.sh $(PYTHON)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m compileall -q dsfleet >/dev/null
	@touch $@

demo: $(STAMP)
	@bash scripts/demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir site

test: lint docs
	$(BIN)/python -m pytest -q tests

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -x tests/unit

lock:
	@bash scripts/lock.sh

stub-image: $(SYSSTAMP)
	@bash scripts/stub-image.sh

bench: $(STAMP)
	$(BIN)/python -m compileall -q dsfleet benchmarks >/dev/null
	$(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/signing.py
	$(BIN)/python benchmarks/hotcameras.py
	$(BIN)/python benchmarks/live.py
	PYTHONPATH=. $(BIN)/python benchmarks/applyscale.py 100 1000

clean:
	rm -rf $(VENV) .dsfleet benchmarks/out site
