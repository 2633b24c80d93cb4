# Two entry points for a fresh machine (see README): `make demo` and `make test`.
# Each creates the virtual environment .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch is installed first and pinned: with the range in pyproject.toml alone, pip could pick a
# multi-GB CUDA build; 2.13.0 is the CPU build this project is developed and tested with.
TORCH_SPEC ?= torch==2.13.0

.PHONY: demo test lint install clean-venv

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/dmao demo

test: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/pytest -q

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean-venv:
	rm -rf $(VENV)
