# podlab — `make lint` and `make test` are what CI runs (.ci/run). Every target needs
# root and Docker except venv, lint and unit.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV ?= .venv
BIN := $(VENV)/bin
# No cache dir in the checkout (CI runs from read-mostly trees; nothing to clean up).
PYTEST_FLAGS ?= -p no:cacheprovider -q

.PHONY: venv setup images test unit integration lint clean demo bench bench-e2e bench-clab matrix

# the virtualenv alone: no root, no Docker
venv:
	@scripts/setup-venv.sh

# the host (apt packages, dockerd), then the virtualenv
setup:
	@scripts/setup-host.sh

images: setup
	$(BIN)/podlab images build

# unit first: fast and pure, so a broken model fails before any container starts.
# pytest exits 5 when it collects nothing; make treats that as a failure, as wanted.
test: setup
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit
	$(BIN)/pytest $(PYTEST_FLAGS) tests/integration

unit: venv
	$(BIN)/pytest $(PYTEST_FLAGS) tests/unit

integration: setup
	$(BIN)/pytest $(PYTEST_FLAGS) tests/integration

lint: venv
	$(BIN)/ruff check harness tests bench

clean:
	@if [ -x $(BIN)/podlab ]; then $(BIN)/podlab destroy --all; \
	else echo "clean: no $(BIN)/podlab (run make setup first)"; fi

# Build the images, then deploy flat3, print the verification table and tear it down;
# fails exactly when `podlab run` does (make itself exits 2 on any failure).
demo: setup
	$(BIN)/podlab images build
	$(BIN)/podlab run -t topologies/flat3.clab.yml

# Every figure the README's "How fast" quotes, each beside its target: the small
# examples (bench/examples.py); podlab vs the Docker floor at several lab sizes
# (bench/results.json); each CNI's deploy against cni: podlab's (bench/results-cni.json);
# dual-stack verify against single-stack (bench/dualstack.json); routing: bgp's route
# installation, convergence and cold image build, single- and dual-stack; `podlab run` on
# flat3 against the floor (bench/e2e.json); the 200-pod lab's verify and verify --quick
# (bench/big.json); podlab beside containerlab
# (bench/clab.json); and the whole matrix's wall time (its last line). Any failed result fails the step, and make.
# BENCH_ARGS="--quick" for a smoke run, "--sizes 4x24,10x20 --repeat 5" to choose.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python bench/examples.py --json bench/examples.json
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/run.py --sizes 4x24 --cni podlab,bridge,ptp --json bench/results-cni.json
	$(BIN)/python bench/dualstack.py --json bench/dualstack.json
	$(BIN)/python bench/bgp.py --image
	$(BIN)/python bench/bgp.py --dual
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/run.py --sizes 10x200 --repeat 1 --quick-verify --json bench/big.json
	$(BIN)/python bench/clab.py $(CLAB_BENCH_ARGS)
	$(BIN)/podlab matrix --out out/bench-matrix -j $(MATRIX_JOBS) $(MATRIX_SETS)

# podlab beside containerlab on the same nodes and links, and the containerlab runtime
# beside containerlab alone plus podlab's pod step (flat3, 4x24, 10x200): bench/clab.json.
# CLAB_BENCH_ARGS="--labs flat3,4x24 --repeat 5" to choose.
CLAB_BENCH_ARGS ?=
bench-clab: setup
	$(BIN)/python bench/clab.py $(CLAB_BENCH_ARGS)

# `podlab run` end to end on one topology (flat3) against the Docker floor: bench/e2e.json.
bench-e2e: setup
	$(BIN)/python bench/e2e.py $(BENCH_ARGS)

# Every topology across the datapath variants (MATRIX_SETS: every routing and CNI value;
# those not implemented yet are skipped with the reason), MATRIX_JOBS labs at once; one
# JUnit file per combination in $(MATRIX_OUT), a summary table, matrix.json; fails if any
# combination failed.
MATRIX_OUT ?= out/junit
MATRIX_SETS ?= --set routing=static,bgp,fabric --set cni=podlab,bridge,ptp
MATRIX_JOBS ?= $(shell nproc)
# Who makes the nodes and links: each combination under each runtime; containerlab's only
# where there is one (make setup builds it where Go is). Asked for and missing, it is an
# error of every combination that needs it, never a skip.
MATRIX_RUNTIMES ?= $(shell command -v containerlab >/dev/null && echo podlab,containerlab || echo podlab)
matrix: setup
	$(BIN)/podlab matrix --out $(MATRIX_OUT) -j $(MATRIX_JOBS) $(MATRIX_SETS) \
		--runtime $(MATRIX_RUNTIMES)
