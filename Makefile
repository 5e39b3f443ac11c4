# The two commands of the README, and their helpers. Each creates .venv if it is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
# Tests on 8 simulated devices need more PJRT threads than this 2-core machine offers by default,
# or XLA's CPU collectives can deadlock (see tests/conftest.py).
# A second environment with the optional TensorFlow extra, for the test that prepares a TFDS
# dataset whose builder needs TensorFlow; the main one stays without it, as users install it.
TF_VENV := .venv-tf
TEST_ENV := PJRT_NPROC=16 WANDB_MODE=offline SCALING_TF_PYTHON=$(CURDIR)/$(TF_VENV)/bin/python

.PHONY: demo test test-fast bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(TF_VENV)/bin/.installed: pyproject.toml
	test -x $(TF_VENV)/bin/python || $(PYTHON) -m venv $(TF_VENV)
	$(TF_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TF_VENV)/bin/python -m pip install --quiet -e '.[tf]'
	touch $@

demo: $(BIN)/.installed
	$(BIN)/scaling-sweep --config configs/sweeps/demo.py --workdir $(WORKDIR)
	$(BIN)/scaling-fit --results $(WORKDIR)/results.csv --out $(WORKDIR)/fit

# Everything, slow end-to-end tests included: what CI runs. pytest's "no tests ran" (exit 5) fails.
# Three workers on two cores: many tests wait on the processes they start, and a third worker
# fills that time (an earlier suite from cold caches: 17 min 45 s with two, 14 min 29 s with
# three; the current one with three, from a fresh clone on a 2-core Xeon: 10 min 44 s, and on a
# 2-core AMD EPYC at half its matmul rate 25 min 14 s). The 25 slowest tests are listed after.
test: $(BIN)/.installed $(TF_VENV)/bin/.installed
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 3 --dist loadfile --durations=25

test-fast: $(BIN)/.installed
	$(TEST_ENV) $(BIN)/python -m pytest -q -n 3 --dist loadfile -m "not slow"

bench: $(BIN)/.installed
	$(BIN)/python -m bench.bench_train_step

clean:
	rm -rf $(VENV) $(TF_VENV) runs
