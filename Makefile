# Two set-up commands: `make train` and `make test`. Each makes and uses a local virtual environment.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install install-dev train test lint mutation bench bench-gpu clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# The main job: MS R-CNN on the embedded synthetic set, on CPU. Extra Hydra overrides: make train ARGS="seed=1"
train: install
	$(BIN)/msr-train experiment=quickstart $(ARGS)

# Two pytest workers (pytest-xdist), each taking whole test files: about 7 min on 2 CPU cores; the 15 slowest are listed.
test: install
	$(BIN)/python -m ruff check msr tests experiments
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15

# Mutation testing of the core modules against their fast tests (mutmut; not part of `make test`): minutes to
# an hour per group on 2 cores -> experiments/mutation/results/<group>.json. Some groups: make mutation ARGS="bootstrap"
$(VENV)/.mutation-installed: $(VENV)/.installed
	$(BIN)/python -m pip install -e ".[dev,mutation]"
	touch $@

mutation: $(VENV)/.mutation-installed
	nice -n 10 $(BIN)/python experiments/mutation/run_mutation.py $(ARGS)

# Every benchmark under experiments/benchmarks/ -> experiments/benchmarks/results/{*.json,SUMMARY.md}
bench: install
	$(BIN)/python experiments/run_benchmarks.py $(ARGS)

# On a machine with a CUDA GPU (one line and exit status 0 without one): R-50 FPN at 800x1333 per precision
# and batch, the MaskIoU head's overhead, the quickstart and study (a) -> experiments/benchmarks/results/gpu.*
bench-gpu: install
	$(BIN)/python experiments/benchmarks/gpu.py --quickstart --study --json experiments/benchmarks/results/gpu.json \
		--markdown experiments/benchmarks/results/gpu.md $(ARGS)

lint: install
	$(BIN)/python -m ruff check msr tests experiments

clean:
	rm -rf $(VENV) .pytest_cache .mutation
