# make repro: build the locked environment, then run the whole DVC pipeline (cpu profile).
# make test:  build the same environment, then run the test suite.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed-from-lock

.PHONY: env repro paper test test-slow lint bench lock clean-env gpu-check rl-device-check

env: $(STAMP)

$(STAMP): environment.lock pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r environment.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

repro: env
	PATH="$(BIN):$$PATH" dvc repro

# The papers' full experiment lists at their budgets: a second pipeline (paper/params.yaml sets device, nproc).
# Runs in the active environment (on a GPU machine: torch for CUDA, then `pip install -e .`; README).
paper:
	dvc repro paper/dvc.yaml

test: env
	$(BIN)/python -m pytest

test-slow: env
	$(BIN)/python -m pytest -m slow

lint: env
	$(BIN)/ruff check metalearning pipeline tests tools

bench: env
	$(BIN)/python -m metalearning bench

# Re-resolve environment.lock from requirements.in (needs pip-tools; exact versions + sha256).
lock:
	pip-compile --generate-hashes --no-emit-find-links --no-emit-index-url --allow-unsafe \
		--strip-extras requirements.in -o environment.lock

clean-env:
	rm -rf $(VENV)

# On a CUDA machine (torch for CUDA installed, then `pip install -e .`): bench on the GPU, MAML
# Omniglot 5w1s ms/iteration and the projected 60k-iteration time, NCCL check with >= 2 GPUs.
gpu-check:
	python3 tools/gpu_check.py

# On a lent many-core machine (issue 15 item 4): the cheetah's rollout rates over 1, 2 and all cores,
# maml_cheetah_vel's seconds per meta-iteration with one process per core and the projected 500-iteration
# time, then a training of RL_MINUTES (default 4) and its meta-test. Outputs in RL_CHECK_OUT.
RL_CHECK_OUT ?= rl-device-check
RL_MINUTES ?= 4
rl-device-check:
	python3 tools/rl_device_check.py --out $(RL_CHECK_OUT) --train-minutes $(RL_MINUTES)
