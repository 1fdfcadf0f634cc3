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

# Kernel settings for `make test-cpus`: torch's AVX2 kernels (what an AVX2-only CPU runs; on an AVX-512
# machine this also caps oneDNN and MKL there), then its generic ones (no AVX at all in ATen's kernels).
CPUS_AVX2    := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
CPUS_GENERIC := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2
CPUS_TESTS   := -m "learning or cpus"

.PHONY: demo test test-cpus fullsize install bench clean help

help:
	@echo "make demo   - run prepare -> sft -> train-rm -> ppo -> eval -> report on the embedded default"
	@echo "make test   - run the test suite"
	@echo "make test-cpus - the learning and numeric tests again on torch's AVX2 and generic CPU kernels"
	@echo "make bench  - PPO step speed against the legacy TRL trainer, headline and flan-t5-small-lora (creates .bench-venv)"
	@echo "make fullsize - the flan-t5-dialogsum preset end to end on full-size stand-in models (over an hour on two cores)"

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

# The tests marked `learning` or `cpus` (pyproject.toml) must pass whatever kernels torch picks on the
# CPU at hand; after `make test` (the native kernels) this runs them on the two other kernel sets.
test-cpus: $(STAMP)
	$(CPUS_AVX2) $(BIN)/python -c "import torch; print('test-cpus: kernels', torch.backends.cpu.get_cpu_capability())"
	$(CPUS_AVX2) $(BIN)/python -m pytest -n 2 $(CPUS_TESTS) $(PYTEST_ARGS)
	$(CPUS_GENERIC) $(BIN)/python -c "import torch; print('test-cpus: kernels', torch.backends.cpu.get_cpu_capability())"
	$(CPUS_GENERIC) $(BIN)/python -m pytest -n 2 $(CPUS_TESTS) $(PYTEST_ARGS)

# The seed-recipe preset end to end at the real sizes (tests/test_fullsize.py, marker `fullsize`, which
# `make test` leaves out): `detoxrl standin` writes FLAN-T5-base and Meta's judge into STANDINS (kept for
# the next run), then `detoxrl run configs/flan-t5-dialogsum.yaml` runs on them and DialogSum's files in
# ../shared/data/dialogsum with 2 PPO steps and 24 eval prompts. Stage seconds and the peak RSS go to
# FULLSIZE_RUN/fullsize.json. The stand-ins' outputs are meaningless: this measures cost.
STANDINS     ?= runs/standins
FULLSIZE_RUN ?= runs/fullsize
fullsize: $(STAMP)
	DETOXRL_STANDINS=$(STANDINS) DETOXRL_FULLSIZE_RUN=$(FULLSIZE_RUN) \
		$(BIN)/python -m pytest -m fullsize -s tests/test_fullsize.py $(PYTEST_ARGS)

# PPO step speed and memory against TRL 0.11.4 (benchmarks/README.md): the headline size in every precision,
# then the recipe's own workload at FLAN-T5-small's size with LoRA (fp32, plus bf16 where it is native),
# then one line naming the best detoxrl configuration for this machine and its CPU.
BENCH     := $(BIN)/python benchmarks/ppo_vs_trl_legacy.py
BENCH_OUT := runs/bench
bench: $(STAMP)
	$(BENCH) --json-out $(BENCH_OUT)/headline.json
	$(BENCH) --size flan-t5-small-lora --precision auto --json-out $(BENCH_OUT)/flan-t5-small-lora.json
	$(BIN)/python benchmarks/bench_summary.py $(BENCH_OUT)/headline.json $(BENCH_OUT)/flan-t5-small-lora.json

clean:
	rm -rf runs .pytest_cache
