# Every target installs what it needs first: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
SMSGW_API_TOKENS ?= dev-token
export SMSGW_API_TOKENS

.PHONY: run test lint check clean

$(BIN)/smsgw: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/smsgw  ## start smsgw on SQLite with the sandbox account, on :$(PORT)
	$(BIN)/smsgw serve --port $(PORT)

test: $(BIN)/smsgw  ## the whole test suite
	$(BIN)/python -m pytest

lint: $(BIN)/smsgw  ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

check: lint test  ## what CI runs
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python ../shared/contract_check.py

clean:
	rm -rf $(VENV) data
