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
TORCH := torch==2.13.0

.PHONY: demo test setup clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/meta-neighborhoods spiral --out $(OUT)/spiral --overwrite
	$(BIN)/meta-neighborhoods regress --dataset gom --threads 1 --out $(OUT)/gom --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) runs
