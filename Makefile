# Every target builds what it needs: `make train` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/shakespeare.yaml
CORPUS := data/shakespeare.txt

.PHONY: install data train sample tensorboard test lint bench mutate clean

$(BIN)/attnlm: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, in the build that fits the machine: on Linux without an NVIDIA GPU the CPU build (a bare
	# torch requirement would pull several GB of CUDA packages), else the default one (scripts/install_torch.py).
	$(BIN)/python scripts/install_torch.py
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/attnlm

$(CORPUS): | $(BIN)/attnlm
	$(BIN)/attnlm data shakespeare --out $(CORPUS)

data: $(CORPUS)

train: install data
	$(BIN)/attnlm train --config $(CONFIG)

sample: install
	$(BIN)/attnlm sample --max-new-tokens 500

tensorboard: install
	$(BIN)/tensorboard --logdir runs

test: lint data
	$(BIN)/pytest

# ruff, and the import layers written down in .importlinter (a lower module never imports a higher one)
lint: install
	$(BIN)/ruff check attnlm tests scripts
	$(BIN)/lint-imports

# The benchmark corpus is nanoGPT's tiny Shakespeare; it is not downloaded for you (docs/performance.md).
BENCH_CORPUS := data/tinyshakespeare.txt

$(BENCH_CORPUS):
	@echo "make bench needs $@: copy nanoGPT's tiny Shakespeare input.txt there (docs/performance.md)"; exit 1

bench: install $(BENCH_CORPUS)
	$(BIN)/python scripts/bench.py all --data $(BENCH_CORPUS)

# Mutation testing with mutmut (docs/mutation.md): slow, so not part of `make test`. It mutates the modules in
# pyproject.toml's [tool.mutmut] only_mutate, or only those in MODULES, e.g.
# `make mutate MODULES="attnlm/lm/generate.py attnlm/checks.py"`, or SAMPLE=N mutants of each drawn at random
# (SEED picks which); prints the kill rate per module and writes the
# mutants the tests did not kill, with their diffs, to mutants-surviving.txt.
MODULES ?=
SAMPLE ?=
SEED ?= 0

mutate: install data
	$(BIN)/python scripts/mutation_report.py $(if $(SAMPLE),--sample $(SAMPLE) --seed $(SEED)) $(MODULES)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache mutants mutants-surviving.txt
