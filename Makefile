# `make demo` and `make test` are the README's two commands.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/.installed: requirements.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(BIN)/.installed-dev: $(BIN)/.installed requirements-dev.txt
	$(BIN)/pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed
install-dev: $(BIN)/.installed-dev

WORKDIR ?= workdir_demo

# The README's main command: train the G-GhostNet demo on the embedded Fashion-MNIST subset,
# checkpoint, evaluate the restored checkpoint (rerun: resumes / re-evaluates the same workdir).
demo: install
	$(BIN)/python main.py --config=configs/g_ghost_regnet.py:demo --workdir=$(WORKDIR)
	$(BIN)/python main.py --config=configs/g_ghost_regnet.py:demo --workdir=$(WORKDIR) --mode=eval

test: install-dev
	$(BIN)/python -m pytest -n 2 --dist loadgroup -q --durations=25 tests

.PHONY: install install-dev demo test
