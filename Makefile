# ack-addon-watch: `make test` checks everything CI checks; `make demo` shows it working locally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SHARED := ../shared
SRC := functions/addon_watch

# Tests and the demo never ask a metadata service for credentials.
pytest demo bench: export ALIBABA_CLOUD_ECS_METADATA_DISABLED := true

.PHONY: install test lint typecheck pytest demo bench run fmt check-template clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	rm -f $(VENV)/.installed-*
	touch $@

test: lint typecheck pytest

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

pytest: install
	$(PY) -m pytest

demo: install
	PYTHONPATH=$(SRC):. $(PY) -m tests.demo

# One tick at scale against a local ACK simulator, beside the official SDK; prints figures.
bench: install
	PYTHONPATH=$(SRC):. $(PY) -m bench.run

# One real check against the real ACK API with this shell's environment.
run: install
	PYTHONPATH=$(SRC) $(PY) -m addon_watch check

fmt: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

check-template: install
	$(PY) $(SHARED)/tools/check-template template.yml

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
