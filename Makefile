# The two commands in the README: `make demo` and `make test`. Each does all set-up itself
# (Debian packages, .venv, pip install) and is cheap to run again.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The demo needs only the runtime (onnxruntime); tests also need torch and the dev tools.
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
DEMO_OUT ?= out/demo
# The official BIDS validator (npm) checks the BIDS that `bandmate session run` writes.
BIDS_VALIDATOR := .cache/npm/node_modules/.bin/bids-validator

.PHONY: demo test test-quick lint system-deps clean

system-deps:
	@scripts/system-deps.sh

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(RUNTIME_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[train,dev,scale]'
	# Real EEG for the BCI tests: spkit's wheel ships a 16 s recording; its own dependencies
	# are heavy and unused (the tests read the pickle directly), hence --no-deps.
	$(BIN)/pip install -q --no-deps spkit==0.0.9.7
	# Basic Pitch's transcription model (nmp.onnx) for `bandmate bench quality`. We only read the
	# ONNX file, and its metadata pulls tensorflow on Python 3.11, hence --no-deps.
	$(BIN)/pip install -q --no-deps basic-pitch==0.4.0
	touch $@ $(RUNTIME_STAMP)

$(BIDS_VALIDATOR):
	npm install --prefix .cache/npm --no-audit --no-fund --loglevel=error bids-validator@1.15.0

demo: system-deps $(RUNTIME_STAMP)
	$(BIN)/bandmate demo --out $(DEMO_OUT)

test: system-deps $(DEV_STAMP) $(BIDS_VALIDATOR)
	$(BIN)/python -m pytest

# A developer's loop: everything but the tests that start jackd, servers, browsers or long
# real-time runs (marked `slow`); under 2 minutes on a 2-core machine.
test-quick: system-deps $(DEV_STAMP) $(BIDS_VALIDATOR)
	$(BIN)/python -m pytest -m "not slow"

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
