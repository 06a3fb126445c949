# Two commands on a fresh machine: `make run` and `make test` (both set up first).
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp

.PHONY: setup run test test-fast demo app clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	VENV=$(VENV) bash scripts/setup.sh
	touch $(STAMP)

# The main job: the app with the demo dataset where there is a display, else the headless demo.
run: setup
	$(PY) -m engine.run_main

# The whole suite (parity, GUI and slow end-to-end tests included). pytest's exit 5 (no tests
# collected) is non-zero, so it fails here too.
test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

clean:
	rm -rf $(VENV) build dist *.egg-info
