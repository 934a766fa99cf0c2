# Every target installs what it needs first: a fresh machine needs only python3.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8080
SMSGW_API_TOKENS ?= dev-token
export SMSGW_API_TOKENS

.PHONY: run test lint check clean bench bench-tools bench-ingest bench-dispatch bench-scale bench-soak bench-ratelimit bench-multiprocess

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

# Benchmarks: run by hand, never by the test suite; loopback only, bounded in time.
bench-tools:
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

bench-ingest: $(BIN)/smsgw bench-tools  ## durable DLR ingest vs a bare Starlette app
	$(BIN)/python -m bench.ingest

bench-dispatch: $(BIN)/smsgw  ## outbound messages/s to a fake provider, batch and loop
	$(BIN)/python -m bench.dispatch

bench-scale: $(BIN)/smsgw  ## cost per DLR with 10k vs 1M messages stored
	$(BIN)/python -m bench.scale

bench-soak: $(BIN)/smsgw bench-tools  ## 1M callbacks, RSS at start and end
	$(BIN)/python -m bench.soak

bench-ratelimit: $(BIN)/smsgw  ## the token bucket's burst and rate on the wall clock
	$(BIN)/python -m bench.ratelimit

bench-multiprocess: $(BIN)/smsgw  ## wall time of the two-servers-and-a-worker test (PostgreSQL)
	$(BIN)/python -m bench.multiprocess

bench: bench-ingest bench-dispatch bench-scale bench-soak bench-ratelimit
