# Every target sets itself up from nothing: a virtual environment in .venv with the package
# installed (editable) and its test and lint tools.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: demo test test-wheel lint format soak bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -c 'import sys; sys.exit("watcher needs Python >= 3.11, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" bash scripts/demo.sh

test: $(STAMP)
	$(BIN)/python -m pytest

# The suite against the built wheel in a venv of its own, from a folder outside the checkout, so
# what is tested is what `pip install` gives users (package data such as py.typed included).
WHEEL_DIR := build/wheel
test-wheel: $(STAMP)
	rm -rf $(WHEEL_DIR) && mkdir -p $(WHEEL_DIR)
	$(BIN)/python -m pip wheel --quiet --no-deps -w $(WHEEL_DIR) .
	$(PYTHON) -m venv $(WHEEL_DIR)/venv
	$(WHEEL_DIR)/venv/bin/python -m pip install --quiet -c constraints.txt "$$(ls $(WHEEL_DIR)/watcher-*.whl)[test]"
	cp -r tests docs README.md $(WHEEL_DIR)/
	$(BIN)/python scripts/pytest_ini.py > $(WHEEL_DIR)/pytest.ini
	cd $(WHEEL_DIR) && venv/bin/python -c 'import watcher, pathlib, sys; p = pathlib.Path(watcher.__file__); sys.exit(0 if "site-packages" in p.parts and (p.parent / "py.typed").is_file() else f"not the wheel: {p}")'
	cd $(WHEEL_DIR) && venv/bin/python -m pytest -q

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
