# ack-addon-watch: `make test` checks everything CI checks; `make demo` shows it working locally.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | cksum | cut -d' ' -f1)
SHARED := ../shared
SRC := functions/addon_watch

# Tests, the demo and the measurements never ask a metadata service for credentials.
pytest demo measure bench: export ALIBABA_CLOUD_ECS_METADATA_DISABLED := true

.PHONY: install test lint typecheck pytest demo bench run fmt check-template clean
.PHONY: package measure ram-policy deploy invoke remove

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
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build

# Deployment with Serverless Devs (`npm install -g @serverless-devs/s`); see the README.
S ?= s
S_ACCESS ?= default
BUILD := build
INVOKE_EVENT ?= deploy/events/http-check.json

# The code package, without Docker: Linux wheels for CPython 3.10, the code, the templates.
package: install
	$(PY) -m deploy.package --out $(BUILD)

# Peak memory and duration of demo-sized ticks, run from the package (sizes template.yml).
measure: package
	PYTHONPATH=$(SRC):. $(PY) -m deploy.measure --package $(BUILD)/package

# deploy/ram-policy.json filled with STATE_STORE, DEPLOY_LOG_PROJECT and DEPLOY_LOG_STORE.
ram-policy:
	@$(PYTHON) -m deploy.policy

deploy: package
	PYTHONPATH=$(SRC):. $(PY) -m deploy.preflight
	$(S) deploy -t template.yml -a $(S_ACCESS)

# Runs one check now through the function's HTTP routes, authenticated as the deployer.
invoke:
	$(S) invoke -t template.yml -a $(S_ACCESS) --event-file $(INVOKE_EVENT)

remove:
	$(S) remove -t template.yml -a $(S_ACCESS)
