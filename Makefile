# usbip-gadget: every command the project runs, installed by the project itself.
PYTHON ?= python3
VENV   := $(CURDIR)/.venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup test test-fast test-kernel lint demo bench bench-fast fuzz clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test,lint]'
	touch $@

## make test: the fast tier, then the kernel tier (one QEMU guest boot).
test: test-fast test-kernel

## make test-fast: no root, no VM.
test-fast: setup
	$(BIN)/pytest -m "not kernel"

## make test-kernel: boots one guest with a real Linux USB stack and runs every kernel-tier test in it.
test-kernel: setup
	bash tools/kernel/run-tier

lint: setup
	$(BIN)/ruff check src tests tools
	$(BIN)/ruff format --check src tests tools
	$(BIN)/mypy

demo: setup
	bash tools/kernel/run-tier --demo

## make bench [BASELINE=REV]: with BASELINE, attach of revision REV is measured beside this one.
bench: setup
	bash tools/kernel/run-tier --bench $(if $(BASELINE),--baseline $(BASELINE))

## make bench-fast: no root, no VM: the bridge's CPU per URB through the real client and pumps.
bench-fast: setup
	$(BIN)/python tools/bench_fast.py

## make fuzz [SEED=N] [CASES=N]: no root, no VM: every fuzz target, seeded (a fixed seed by
## default), CASES in all (1,000,000 by default); a count per target, non-zero exit on a failure.
fuzz: setup
	$(BIN)/python -m tools.fuzz $(if $(SEED),--seed $(SEED)) $(if $(CASES),--cases $(CASES))

clean:
	rm -rf $(VENV) build .pytest_cache .mypy_cache .ruff_cache .hypothesis
