# Two commands do all set-up: `make demo` and `make test`. Both create .venv when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
# This machine's exact pins (torch's on-disk CPU build); the package metadata keeps ranges.
CONSTRAINTS := constraints/ci.txt

.PHONY: demo test lint bench clean chromium check-wheel test-matrix
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Stamp files so that a second `make` does not reinstall; pyproject changes trigger a reinstall.
$(VENV)/.installed: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(CONSTRAINTS) | $(BIN)/python
	$(PIP) install --quiet -c $(CONSTRAINTS) -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/protlm demo --out runs/demo

# Headless Chromium opens the HTML attention reports in the tests (Debian's package).
chromium:
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

test: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/python -m pytest -q
	$(BIN)/python scripts/check_wheel.py

# The wheel as a user gets it: built from the sdist, installed into a fresh venv beside an existing torch,
# run from outside the checkout (`protlm --help`, `doctor`, `demo --quick`). Part of `make test`.
check-wheel: $(VENV)/.installed-dev
	$(BIN)/python scripts/check_wheel.py

# The suite on Python 3.10-3.13 x {floors, latest} (uv, one venv a cell; about 10 min a cell, so not in
# `make test`). Results: .matrix/results.md; README "Supported versions" records them.
PYTHONS ?= 3.10,3.11,3.12,3.13
test-matrix: $(VENV)/.installed-dev
	$(PIP) install --quiet 'uv>=0.9'
	$(BIN)/python scripts/test_matrix.py --pythons $(PYTHONS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts

clean:
	rm -rf $(VENV) runs .pytest_cache .matrix dist build
