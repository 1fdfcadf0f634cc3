# detoxrl — quick start: `make demo` runs the whole pipeline on the embedded default,
# `make test` runs the test suite. Both create .venv and install what they need first.
PYTHON ?= python3
VENV   ?= .venv
# The CPU build of torch is installed first so that pip never pulls the CUDA packages.
# Override on a GPU machine, e.g. `make demo TORCH_SPEC=torch`.
TORCH_SPEC ?= torch==2.13.0
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test install bench clean help

help:
	@echo "make demo   - run prepare -> sft -> train-rm -> ppo -> eval -> report on the embedded default"
	@echo "make test   - run the test suite"
	@echo "make bench  - PPO step speed against the legacy TRL trainer (creates .bench-venv)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/detoxrl run

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/ppo_vs_trl_legacy.py

clean:
	rm -rf runs .pytest_cache
