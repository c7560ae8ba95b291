# podlab — `make lint` and `make test` are what CI runs (.ci/run). Every target needs
# root and Docker except venv, lint and unit.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

VENV ?= .venv
BIN := $(VENV)/bin
# No cache dir in the checkout (CI runs from read-mostly trees; nothing to clean up).
PYTEST_FLAGS ?= -p no:cacheprovider -q

.PHONY: venv setup images test unit integration lint clean demo bench bench-e2e matrix

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

# podlab vs the Docker floor at several lab sizes: one table, bench/results.json; then
# routing: bgp's route installation and convergence times on the two-rack example; then
# the speed goals the README states: `podlab run` on flat3 against the floor
# (bench/e2e.json), verify's results a second on the 200-pod lab (bench/big.json), and
# the whole matrix's wall time (its last line).
# BENCH_ARGS="--quick" for a smoke run, "--sizes 4x24,10x20 --repeat 5" to choose.
BENCH_ARGS ?=
bench: setup
	$(BIN)/python bench/run.py $(BENCH_ARGS)
	$(BIN)/python bench/bgp.py
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/run.py --sizes 10x200 --repeat 1 --json bench/big.json
	$(BIN)/podlab matrix --out out/bench-matrix -j $(MATRIX_JOBS) $(MATRIX_SETS)

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
matrix: setup
	$(BIN)/podlab matrix --out $(MATRIX_OUT) -j $(MATRIX_JOBS) $(MATRIX_SETS)
