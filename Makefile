# The two commands of the README: `make run` (set up, then the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export LLMREC_HOME ?= $(HOME)/.cache/llmrec

.PHONY: setup run test test-slow clean-home

setup: $(VENV)/.installed

# torch first and pinned: 2.13.0 is the CPU build here; an unpinned torch would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[cpu,serve,train,gguf,dev]'
	touch $@

# The main job: prepare the demo catalog (movie, music, grocery) and recommend (the first call
# embeds the catalog, about 5 minutes on 2 cores; later calls reuse the saved indexes).
run: setup
	$(BIN)/llmrec data prepare demo
	$(BIN)/llmrec recommend --scene movie --query "funny animated movie for kids" -k 10
	$(BIN)/llmrec recommend --query "songs for a summer road trip" -k 5
	$(BIN)/llmrec recommend --query "healthy snacks for my dog" -k 5
	$(BIN)/llmrec recommend --user-id 1 -k 10

test: setup
	$(BIN)/python -m pytest

# Also the tests marked slow: preparing the packaged 491 MB language model (about 3 minutes).
test-slow: setup
	$(BIN)/python -m pytest -m ""

clean-home:
	rm -rf $(LLMREC_HOME)
