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
	$(PY) -m raclate_app.run_main

# The whole suite (parity, GUI and slow end-to-end tests included). pytest's exit 5 (no tests
# collected) is non-zero, so it fails here too.
test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -ra

test-fast: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q -m "not slow"

# The desktop app bundle (packaging/raclate.spec, see packaging/README.md): macOS → "dist/RACLATE Tuner.app"
# (ad-hoc signed), Linux → dist/raclate-tuner/raclate-tuner.
APP_DIST ?= dist
APP_WORK ?= build/pyinstaller
app: setup
	$(PY) -m PyInstaller --noconfirm --log-level WARN --distpath $(APP_DIST) --workpath $(APP_WORK) packaging/raclate.spec
	@if [ "$$(uname -s)" = "Darwin" ]; then \
	  codesign --force --deep -s - "$(APP_DIST)/RACLATE Tuner.app" && \
	  echo "app: $(APP_DIST)/RACLATE Tuner.app (ad-hoc signed; open it with: open \"$(APP_DIST)/RACLATE Tuner.app\")"; \
	else echo "app: $(APP_DIST)/raclate-tuner/raclate-tuner"; fi

clean:
	rm -rf $(VENV) build dist *.egg-info
