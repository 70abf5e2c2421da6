# Two commands from a fresh clone: `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.deps-installed

.PHONY: run test bench venv migrate demo browser fonts clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

venv: $(STAMP)

migrate: venv
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py migrate --noinput

demo: migrate
	DEBUG=$${DEBUG:-1} $(BIN)/python manage.py load_demo

run: venv
	@bash scripts/run.sh

browser:
	@bash scripts/ensure-chromium.sh

fonts:
	@bash scripts/ensure-test-fonts.sh

test: venv browser fonts
	DEBUG=$${DEBUG:-1} $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: venv
	DEBUG=$${DEBUG:-1} $(BIN)/python bench/run_all.py $(BENCH)

clean:
	rm -rf var/ .pytest_cache
