# Two entry points for a fresh machine with only Python installed:
#   make demo   set up .venv and run the main job on built-in data
#   make test   set up .venv and run the test suite
# Both are idempotent: the environment is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
OUT ?= runs/demo
# torch is pinned: this exact version is a local CPU build here; a looser pin may pull a multi-GB CUDA build.
# Elsewhere pip takes its index's build (on Linux, PyPI's is CUDA's): TORCH_INDEX=https://download.pytorch.org/whl/cpu
# takes the CPU one.
TORCH := torch==2.13.0
TORCH_INDEX ?=

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meta-neighborhoods spiral --out $(OUT)/spiral --overwrite
	$(BIN)/meta-neighborhoods regress --dataset gom --threads 1 --out $(OUT)/gom --overwrite

# One test process per core (at most 8, pytest-xdist): conftest gives each process one compute thread, so a single
# process would leave the other cores idle (on 2 cores: 4.9 min instead of 8.5). PYTEST_ARGS passes pytest options:
# make test PYTEST_ARGS="-n 0 -k spiral" runs the spiral tests in one process.
test: $(STAMP)
	$(BIN)/python -m pytest -n auto --maxprocesses 8 $(PYTEST_ARGS)

# The environment only: runs/ holds a user's results (the README's examples write there), which are theirs to remove.
clean:
	rm -rf $(VENV)
