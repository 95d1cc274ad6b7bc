# chaosproxy: `make demo` and `make test` are the whole quickstart on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-unit test-wire test-e2e test-py312 test-mitmproxy-next lint bench bench-profile soak soak-stream schema sysdeps clean docs docs-serve

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,bench]'
	@touch $(STAMP)

## demo: create the virtualenv if needed and run the workshop demo
demo: $(STAMP)
	$(VENV)/bin/chaosproxy demo $(DEMO_ARGS)

## sysdeps: the Debian tools the suite drives (docker-compose for compose validation,
## chromium for the browser test, wrk and nginx for the benchmark, redis-server for
## shared state)
sysdeps:
	@scripts/install-sysdeps

## test: create the virtualenv if needed, install, run the whole suite
test: $(STAMP) sysdeps
	$(PY) -m pytest $(PYTEST_ARGS)

## test-unit / test-wire / test-e2e: one tier (tests/conftest.py); unit takes seconds
test-unit test-wire: $(STAMP)
	$(PY) -m pytest -m $(@:test-%=%) $(PYTEST_ARGS)
test-e2e: $(STAMP) sysdeps
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

## test-py312: the same suite on Python 3.12 (mitmproxy 12.x) in .venv312
# the first Python 3.12 that runs (a pyenv shim for a version not selected does not)
PY312 ?= $(shell for p in $$(command -v python3.12) $$(ls -r $$HOME/.pyenv/versions/3.12*/bin/python 2>/dev/null); do \
	$$p -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo $$p; break; }; done)
test-py312:
	@test -n "$(PY312)" || { echo "no Python 3.12 found (set PY312=/path/to/python3.12)"; exit 2; }
	$(MAKE) test VENV=.venv312 PYTHON=$(PY312)

## test-mitmproxy-next: on Python 3.12 (mitmproxy 12.x, in .venv312), every mitmproxy patch
## applies (or falls back with one warning), plus the unit tier; CI runs it after `make test`
test-mitmproxy-next:
	@test -n "$(PY312)" || { echo "no Python 3.12 found (set PY312=/path/to/python3.12)"; exit 2; }
	$(MAKE) .venv312/.installed VENV=.venv312 PYTHON=$(PY312)
	.venv312/bin/python -m pytest -p no:cacheprovider tests/proxy_addons/test_internals.py
	.venv312/bin/python -m pytest -p no:cacheprovider -m unit

## bench: chaosproxy side by side with plain mitmdump, nginx and (with --peers) toxy;
## writes bench/results/<date>.json/.md/.png. BENCH_ARGS="--quick" for a short run.
BENCH_ARGS ?= --peers
bench: $(STAMP) sysdeps
	$(PY) -m bench $(BENCH_ARGS)

## bench-profile: sample chaosproxy under passthrough load with py-spy, print the hot spots
bench-profile: $(STAMP) sysdeps
	$(PY) -m bench.profile $(PROFILE_ARGS)

## soak: the proxy under moderate mixed load for SOAK_SECONDS (default 600 = 10 minutes),
## then its log, memory, decision log and /stats checked against what the clients saw
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(PY) scripts/soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

## soak-stream: endless SSE streams through a stream fault for SOAK_SECONDS, the proxy's
## RSS sampled (it must stay flat: nothing buffered)
soak-stream: $(STAMP)
	$(PY) scripts/stream_soak.py --seconds $(SOAK_SECONDS) $(SOAK_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check chaosproxy proxy_addons demo_app tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo

## docs: build the manual (docs/, mkdocs.yml) into site/, failing on any warning;
## docs-serve: serve it with live reload on http://127.0.0.1:8000/
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

## schema: regenerate scenarios/schema.json from the model
schema: $(STAMP)
	$(VENV)/bin/chaosproxy schema > scenarios/schema.json

clean:
	rm -rf $(VENV) .venv312 build site *.egg-info .pytest_cache .mypy_cache .ruff_cache
