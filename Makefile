# Two entry points: `make run` (the service on the committed models) and `make test` (lint, types, tests).
PYTHON ?= python3
SERVE_VENV := .venv-serve
DEV_VENV := .venv
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test lint typecheck pytest clean data

# The service environment: runtime dependencies only (no torch), as in the container, at the versions
# pinned in requirements/ (scripts/lock.sh regenerates them).
$(SERVE_VENV)/.installed: pyproject.toml requirements/service.txt
	$(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/pip install --quiet -c requirements/service.txt --upgrade pip
	$(SERVE_VENV)/bin/pip install --quiet -c requirements/service.txt .
	touch $@

# The development environment: the service plus training (torch==2.13.0, CPU) and dev tools.
$(DEV_VENV)/.installed: pyproject.toml requirements/dev.txt
	$(PYTHON) -m venv $(DEV_VENV)
	$(DEV_VENV)/bin/pip install --quiet -c requirements/dev.txt --upgrade pip
	$(DEV_VENV)/bin/pip install --quiet -c requirements/dev.txt -e ".[train,dev]"
	touch $@

run: $(SERVE_VENV)/.installed
	$(SERVE_VENV)/bin/ae-serve --repository models --host $(HOST) --port $(PORT)

lint: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/ruff check training service tests bench client
	$(DEV_VENV)/bin/ruff format --check training service tests bench client

typecheck: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/mypy

# PYTEST_ARGS narrows the run, e.g. the fresh-clone check's  PYTEST_ARGS='-m "not distributed"'.
PYTEST_ARGS ?=
pytest: $(DEV_VENV)/.installed
	$(DEV_VENV)/bin/python -m pytest -q $(PYTEST_ARGS)

test: lint typecheck pytest

# The public data sets the default models were trained on (BSDS500, ECG5000), verified, into
# $AE_DATASETS or ../shared/datasets; set AE_DATA_MIRROR to fetch from a mirror. Needs no install.
data:
	$(PYTHON) -m training.cli data fetch

clean:
	rm -rf $(SERVE_VENV) $(DEV_VENV) .pytest_cache .mypy_cache .ruff_cache
