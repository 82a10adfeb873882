# The README's commands. Each target installs what it needs into .venv first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
PORT ?= 5000

.PHONY: run test test-fast serve lint predict chromium redis-server train-all

run: $(VENV)/.serving  ## Run the app locally on http://127.0.0.1:$(PORT)
	PORT=$(PORT) $(PY) app.py

serve: $(VENV)/.serving  ## Run it as the Procfile does (gunicorn)
	PORT=$(PORT) $(VENV)/bin/gunicorn -c gunicorn.conf.py wsgi:app

MODEL ?= nucleus
IN ?= static/examples
OUT ?= results
predict: $(VENV)/.serving  ## Batch: make predict MODEL=nucleus IN=<files or folders> OUT=results
	$(VENV)/bin/flask --app wsgi devolearn predict $(MODEL) $(IN) --out $(OUT)

test: $(VENV)/.dev $(VENV)/.training chromium redis-server  ## Every test: unit, training, browser, jobs
	$(PY) -m pytest

test-fast: $(VENV)/.dev  ## The tests that need neither PyTorch nor a browser
	$(PY) -m pytest -m "not browser and not training"

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.serving: requirements.txt | $(VENV)/bin/python
	$(PIP) install -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install -r requirements-dev.txt
	touch $(VENV)/.serving $@

$(VENV)/.training: requirements-training.txt | $(VENV)/bin/python
	$(PIP) install -r requirements-training.txt
	touch $@

# Debian's Chromium drives the browser tests (Playwright cannot download a browser here).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium >/dev/null; }

# Debian's redis-server for the job tests (real Redis, real RQ workers; tests/jobs).
redis-server:
	@command -v redis-server >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq redis-server >/dev/null; }
