# Every target sets itself up from nothing: a virtual environment in .venv with the package
# installed (editable) and its test and lint tools.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test lint format soak bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("watcher needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Not part of `make test`: minutes of faults and SIGKILLs, printing what it checked.
soak: $(STAMP)
	$(BIN)/python bench/soak.py
	HYPOTHESIS_PROFILE=soak $(BIN)/python -m pytest -q tests/test_properties.py

# Not part of `make test`: the polling, overhead, scale and download benchmarks (bench/README.md).
bench: $(STAMP)
	$(BIN)/python bench/bench_all.py

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) demo-out build *.egg-info
