# One entry point for installing, testing and running the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH_PIN := torch==2.13.0

.PHONY: install test bench lint mutation fetch clean doctor gpu-check reproduce-table1 \
	compare-binarization compare-binarization-causes report-reference reproduce-table2 \
	compare-estimators oracle-env oracle oracle-independent

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
GPU_CHECK_OUT ?= gpu-check
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

# The authors' Theano code runs in Python 2.7 (`make oracle-env`): PYTHON2, else a working
# python2.7 on PATH, else pyenv's 2.7. virtualenv is bootstrapped into the environment folder,
# never into that Python. The stamp makes a second call instant.
ORACLE_ENV := .venv-oracle
ORACLE_STAMP := $(ORACLE_ENV)/.installed
ORACLE_PINS := numpy==1.16.6 scipy==1.2.3 theano==1.0.5 progressbar==2.5
PYTHON2 ?= $(shell for p in python2.7 "$$(pyenv root 2>/dev/null)/versions/2.7.18/bin/python2.7" \
	$$(ls -d "$$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python2.7 2>/dev/null); do \
	"$$p" -c 'import sys; assert sys.version_info[:2] == (2, 7)' >/dev/null 2>&1 && \
	{ command -v "$$p" || echo "$$p"; } && break; done)
ORACLE_FLAGS ?=

oracle-env: $(ORACLE_STAMP)

$(ORACLE_STAMP):
	@test -n "$(PYTHON2)" || { echo "no Python 2.7 found: install one (e.g. pyenv install 2.7.18) or set PYTHON2=/path/to/python2.7" >&2; exit 2; }
	$(PYTHON2) -m pip install --quiet --target $(ORACLE_ENV)/.bootstrap 'virtualenv<20.22'
	PYTHONPATH=$(ORACLE_ENV)/.bootstrap $(PYTHON2) -m virtualenv --quiet $(ORACLE_ENV)
	$(ORACLE_ENV)/bin/pip install --quiet $(ORACLE_PINS)
	mkdir -p $(ORACLE_ENV)/theano-cache
	touch $(ORACLE_STAMP)

# The authors' code beside the suite (about an hour here; ORACLE_FLAGS='--steps N --configs ...').
oracle: install oracle-env
	-$(PY) fetch mnist binarized-mnist $(if $(wildcard ../shared/datasets),--from ../shared/datasets)
	$(PY) oracle $(ORACLE_FLAGS)

# Independent runs of both sides, each its own seeds, scored on one binary test set (about 30
# minutes here at the defaults; INDEPENDENT_FLAGS='--epochs E --seeds S --eval-n N --configs ...').
INDEPENDENT_FLAGS ?= --epochs 1 --seeds 3 --eval-n 100
oracle-independent: install oracle-env
	-$(PY) fetch mnist binarized-mnist $(if $(wildcard ../shared/datasets),--from ../shared/datasets)
	$(PY) oracle --independent $(INDEPENDENT_FLAGS)

# Test processes (pytest-xdist): one per core by default, idle ones taking tests from busy ones,
# each with one torch thread (two threads a process oversubscribe the cores and run slower).
# TEST_WORKERS=0 runs them all in this process.
TEST_WORKERS ?= auto
TEST_THREADS ?= 1

test: install
	OMP_NUM_THREADS=$(TEST_THREADS) $(BIN)/python -m pytest -q --ignore=tests/benchmarks \
		-n $(TEST_WORKERS) --dist worksteal

bench: install
	$(BIN)/python -m pytest -q tests/benchmarks --benchmark-only --benchmark-columns=min,median,mean,rounds

lint: install
	$(BIN)/ruff check .

# Mutation testing of the numerical core ([tool.mutmut] in pyproject.toml); slow, not in CI.
# MUTANTS narrows it, e.g. make mutation MUTANTS='benchmark.models.objectives.*'
MUTANTS ?=
mutation: install
	rm -rf mutants
	OMP_NUM_THREADS=1 $(BIN)/mutmut run $(MUTANTS); status=$$?; \
	$(BIN)/mutmut results; exit $$status

fetch: install
	$(BIN)/python -m benchmark fetch all

# This machine: torch, CUDA, device, threads, compiler; the CUDA-graph self-check and the CUDA
# tests on a GPU; one step of every group kind timed; the targets' projected wall times.
doctor: install
	$(PY) doctor --device $(DEVICE) --numerics $(NUMERICS)

# The GPU measurements (CUDA tests, doctor, TF32 on and off, the Table 1 grid's step time), for
# a machine with a CUDA GPU and MNIST (fetched into $(IWAE_DATA_DIR) or datasets/).
gpu-check: install
	PYTHON=$(BIN)/python ./.ci/gpu-check $(GPU_CHECK_OUT)

clean:
	rm -rf $(VENV) $(ORACLE_ENV) .pytest_cache .benchmarks

# install, fetch, sweep, report. A dataset that cannot be fetched is not fatal: the sweep records
# its runs as unavailable and the report shows them so. The report is written even when runs
# failed or none could start (it shows why); the target then still exits non-zero, with one
# line saying so after the report's.
define reproduce
	-$(PY) fetch $(call datasets_for,$(or $(DATA),$(2)))
	$(PY) sweep $(1) $(SWEEP_FLAGS); status=$$?; \
	$(PY) report --results $(RESULTS) --grid $(1) --out $(REPORTS)/$(1) || exit $$?; \
	if [ $$status -ne 0 ]; then echo "make: the $(1) sweep exited with status $$status (its \
	last line above says why); the report is in $(REPORTS)/$(1)" >&2; fi; exit $$status
endef

reproduce-table1: install
	$(call reproduce,table1,mnist-dynamic omniglot)

compare-binarization: install
	$(call reproduce,binarization,mnist-dynamic mnist-fixed)

# Why fixed binarization scores worse: the three training conditions (LM's fixed 50k, dynamic
# on the same 50k, dynamic 59.6k) of the cells asked, every run scored on LM's test file and on
# the seed-123 draw, at the end of every stage; then the report. The defaults are the budget of
# the published findings (results/reference/binarization-causes): about 75 minutes of training
# and 20 of scoring on 2 cores. CAUSES_FLAGS='--stages 5' goes further (3x the training).
CAUSES_CELLS ?= vae_k1_L1 iwae_k5_L1
CAUSES_FLAGS ?= --fidelity paper --schedule full --stages 4 --seeds 3 --eval-k 1000 \
	--eval-n 2000 --tests lm,dynamic --stage-k 200
compare-binarization-causes: install
	-$(PY) fetch mnist binarized-mnist
	$(PY) sweep binarization-causes --cells $(CAUSES_CELLS) $(CAUSES_FLAGS) --device $(DEVICE) \
		--numerics $(NUMERICS) --results $(RESULTS); status=$$?; \
	$(PY) report --results $(RESULTS) --grid binarization-causes \
		--out $(REPORTS)/binarization-causes || exit $$?; exit $$status

# The report of the records the project publishes (no training, no data needed).
REFERENCE ?= results/reference/binarization-causes
report-reference: install
	$(PY) report --results $(REFERENCE) --grid binarization-causes \
		--out $(REPORTS)/reference-binarization-causes

reproduce-table2: install
	$(call reproduce,table2,mnist-dynamic)

# The objectives after the paper (STL, DReG, MIWAE, CIWAE, PIWAE, RWS) on its protocol, then the
# gradient SNR diagnostic at the grid's trained IWAE k=50 checkpoint (it lives in table1), then
# the report. A failed diagnostic is reported but does not hide the sweep's exit status.
SNR_RUN = $(RESULTS)/table1/mnist-dynamic_iwae_k50_L1_s0_$(FIDELITY)_$(SCHEDULE)
compare-estimators: install
	-$(PY) fetch mnist
	$(PY) sweep estimators $(SWEEP_FLAGS); status=$$?; \
	$(PY) diagnose $(SNR_RUN) --snr --device $(DEVICE); \
	$(PY) report --results $(RESULTS) --grid estimators --out $(REPORTS)/estimators && exit $$status
