# fame-workbook: `make figures` (the main job) and `make test`. Both set up .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP := $(BIN)/python -m pip
SMOKE_DIR ?= build/smoke
INSTALL_FLAGS ?= -q
CHROMIUM ?= /usr/bin/chromium

.PHONY: setup figures paper html test unit notebooks nbval browser benchmarks lab clean

setup: $(STAMP)

# Everything the project needs: PyPI dependencies (pyproject.toml, extras for tests and JupyterLab),
# then the weight-only packages that must go in without dependency resolution.
$(STAMP): pyproject.toml requirements-nodeps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(INSTALL_FLAGS) --upgrade "pip>=24"
	$(PIP) install $(INSTALL_FLAGS) -e ".[test,lab]"
	$(PIP) install $(INSTALL_FLAGS) --no-deps -r requirements-nodeps.txt
	touch $@

figures: setup
	$(BIN)/python -m fame_utils.workbook.run --profile default --output figures

paper: setup
	$(BIN)/python -m fame_utils.workbook.run --profile paper --output figures

# Offline HTML of the published notebooks (figures/notebooks/, written by `make figures`), index in reading order.
html: setup
	$(BIN)/python -m fame_utils.workbook.publish figures/notebooks build/html

test: setup unit notebooks nbval browser

unit: setup
	$(BIN)/python -m pytest -m "not notebooks and not browser" tests

# Every notebook in the smoke profile via papermill, then the assertions on what they recorded.
notebooks: setup
	rm -rf $(SMOKE_DIR)
	$(BIN)/python -m fame_utils.workbook.run --profile smoke --output $(SMOKE_DIR)
	FAME_SMOKE_DIR=$(SMOKE_DIR) $(BIN)/python -m pytest -m notebooks tests

# nbval re-executes the smoke copies and compares the outputs marked NBVAL_CHECK_OUTPUT.
nbval: setup
	PATH=$(abspath $(BIN)):$$PATH FAME_STATIC_WIDGETS=1 $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --current-env \
		--nbval-cell-timeout=1800 \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(SMOKE_DIR)/executed/*.ipynb

# Every widget draws and redraws in JupyterLab, driven in headless Chromium (Debian's; .ci/run installs it).
browser: setup
	if [ -x $(CHROMIUM) ]; then \
		$(BIN)/python -m pytest -m browser tests/browser; \
	else \
		echo "SKIPPED browser tests: chromium not installed (apt-get install chromium chromium-driver)"; \
	fi

benchmarks: setup
	for script in benchmarks/*.py; do $(BIN)/python $$script; done

lab: setup
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf build $(VENV)
