# One entry point for installing, testing and running the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: install test bench lint fetch clean reproduce-table1 compare-binarization reproduce-table2

# Knobs of the reproduction targets, e.g. `make reproduce-table1 SCHEDULE=quick DATA=mnist-dynamic`.
SCHEDULE ?= full
FIDELITY ?= code
SEEDS ?= 1
EXECUTOR ?= local
DEVICE ?= auto
NUMERICS ?= exact
DATA ?=
RESULTS ?= results
REPORTS ?= reports
PY := $(BIN)/python -m benchmark
SWEEP_FLAGS = --schedule $(SCHEDULE) --fidelity $(FIDELITY) --seeds $(SEEDS) \
	--executor $(EXECUTOR) --device $(DEVICE) --numerics $(NUMERICS) --results $(RESULTS) \
	$(if $(DATA),--data $(DATA))
# The datasets a list of data conditions needs (fetch names differ from condition names).
datasets_for = $(sort $(subst mnist-dynamic,mnist,$(subst mnist-fixed,binarized-mnist,$(1))))

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

# install, fetch, sweep, report. A dataset that cannot be fetched is not fatal: the sweep records
# its runs as unavailable and the report shows them so. The report is written even when runs
# failed (it shows why); the target then still exits non-zero.
define reproduce
	-$(PY) fetch $(call datasets_for,$(or $(DATA),$(2)))
	$(PY) sweep $(1) $(SWEEP_FLAGS); status=$$?; \
	$(PY) report --results $(RESULTS) --grid $(1) --out $(REPORTS)/$(1) && exit $$status
endef

reproduce-table1: install
	$(call reproduce,table1,mnist-dynamic omniglot)

compare-binarization: install
	$(call reproduce,binarization,mnist-dynamic mnist-fixed)

reproduce-table2: install
	$(call reproduce,table2,mnist-dynamic)
