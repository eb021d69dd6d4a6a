# One entry point for installing, testing and running the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: install test bench lint fetch clean

install: $(STAMP)

# The stamp depends on the project metadata, so editing dependencies reinstalls and a second
# `make install` is instant. torch is installed first and pinned: a bare requirement would pull
# several GB of CUDA wheels.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(TORCH_PIN)
	$(BIN)/pip install --quiet -e '.[dev,ray]'
	touch $(STAMP)

test: install
	$(BIN)/python -m pytest -q --ignore=tests/benchmarks

bench: install
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

lint: install
	$(BIN)/ruff check .

fetch: install
	$(BIN)/python -m benchmark fetch all

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks
