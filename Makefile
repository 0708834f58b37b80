# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv on first use, from the lock.
# docs/dependencies.md: what is locked, how to bump it (`make lock`), and `make test-latest`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LATEST ?= .venv-latest
PIP := python -m pip --quiet --disable-pip-version-check

.PHONY: install demo test test-fast test-latest lint lock doctor clean

# Exactly the locked set (hash-checked, no resolver), then tunesmith itself without touching it.
$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv --clear $(VENV)
	$(BIN)/$(PIP) install --require-hashes --no-deps -r requirements.lock
	$(BIN)/$(PIP) install --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check --disable-pip-version-check
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/tunesmith demo

# One worker per core (pytest-xdist), each test file on one worker (its module fixtures built once).
test: install
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

test-fast: install
	$(BIN)/python -m pytest -q -n auto --dist loadfile -m "unit or integration"

# The newest releases pyproject.toml's ranges allow, in a venv of their own; prints what it got, then the suite.
test-latest:
	$(PYTHON) -m venv --clear $(LATEST)
	$(LATEST)/bin/$(PIP) install --upgrade --upgrade-strategy eager -e ".[dev]"
	$(LATEST)/bin/tunesmith doctor
	$(LATEST)/bin/python -m pytest -q

# Regenerate requirements.lock from pyproject.toml's ranges and requirements/pins.txt, newest of the day.
lock:
	$(PYTHON) -m venv --clear .venv-lock
	.venv-lock/bin/$(PIP) install pip-tools==7.7.0
	.venv-lock/bin/pip-compile --quiet --upgrade --generate-hashes --allow-unsafe --strip-extras \
	  --no-emit-index-url --no-emit-find-links --extra dev --extra bench \
	  -c requirements/pins.txt -o requirements.lock pyproject.toml

doctor: install
	$(BIN)/tunesmith doctor

lint: install
	$(BIN)/python -m ruff check src tests bench

clean:
	rm -rf $(VENV) $(LATEST) .venv-lock runs .pytest_cache
