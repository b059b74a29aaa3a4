# Two entry points (README quick start): `make demo` and `make test` (lint, then the suite).
# Each installs what it needs into .venv first; a stamp file skips the install when the
# requirements are unchanged.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 7860
BIN := $(VENV)/bin

.PHONY: demo test bench mutation clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test: requirements.txt requirements-test.txt requirements-cluster.txt | $(BIN)/python
	$(BIN)/pip install --quiet -r requirements-test.txt
	touch $(VENV)/.runtime $@

demo: $(VENV)/.runtime
	$(BIN)/python app.py --port $(PORT)

# the services it installs must then be there: their absence fails the run (tests/conftest.py);
# pytest-randomly shuffles the order every run and prints its seed (--randomly-seed=N repeats it)
test: $(VENV)/.test
	bash scripts/install-test-services.sh
	$(BIN)/ruff check .
	STUDIO_REQUIRE_SERVICES=1 $(BIN)/python -m pytest

# the planted bugs of issue 38, then mutmut over the scoring modules (minutes; tests/MUTATION.md)
mutation: $(VENV)/.test
	$(BIN)/python scripts/planted_mutants.py
	$(BIN)/python scripts/mutation.py

bench: $(VENV)/.test
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache build
