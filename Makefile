# Every target builds its own virtual environment, so a fresh clone needs only Python 3.11+.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test services lint typecheck venv conformance bench bench-core bench-echo bench-drivers bench-http scale clean \
	fuzz fuzz-short slowloris soak venv-compiled test-compiled test-pure conformance-compiled wheels \
	test-nocc

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	UNKNOT_PURE_BUILD=1 $(BIN)/python -m pip install -q -e '.[test,drivers]'
	touch $(STAMP)

venv: $(STAMP)

## The main demo: the seeds' examples, running concurrently on one thread.
demo: $(STAMP)
	$(BIN)/python examples/demo.py
	$(BIN)/python examples/http_server.py --seconds 1

## Servers and tools the tests start themselves but need installed (PostgreSQL, MariaDB, Redis,
## RabbitMQ, Mosquitto are expected running on the machine): beanstalkd, and for the HTTP
## tests wrk, curl and nginx. Installed with apt-get when missing and possible; without them
## their tests skip (and fail under CI=true).
services:
	@for tool in beanstalkd:beanstalkd wrk:wrk curl:curl nginx:nginx-light; do \
	  cmd=$${tool%%:*}; pkg=$${tool##*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || { \
	    if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	      echo "installing $$pkg"; \
	      { [ -n "$$updated" ] || apt-get update -qq; } >/dev/null 2>&1; updated=1; \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null 2>&1 \
	        || echo "could not install $$pkg"; \
	    else echo "$$cmd is not installed: its tests will skip"; fi; }; \
	done

## The default test suite (fast), plus lint, type checks and the import layering
## (lint-imports: the contracts in pyproject.toml, drawn in docs/internals.md).
test: $(STAMP) services
	$(BIN)/python -m ruff check src tests examples benchmarks conformance fuzz
	$(BIN)/python -m ruff format --check src tests examples benchmarks conformance fuzz
	$(BIN)/python -m mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## CPython's own test modules (socket, ssl, threading...), unpatched and under unknot.patch();
## fails on a test that regresses under the patch and is not in conformance/disabled.txt.
## Report: conformance/README.md explains it; the full results go to $(VENV)/conformance.json.
## CONFORMANCE_JOBS: test processes at a time (2: both halves of this 2-CPU machine; the
## reruns that tell a flaky test from a regression still run one at a time, at the end).
CONFORMANCE_JOBS ?= 2
conformance: $(STAMP)
	$(BIN)/python conformance/run.py --json $(VENV)/conformance.json --logs $(VENV)/conformance-logs \
	  --jobs $(CONFORMANCE_JOBS)

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests examples benchmarks conformance fuzz
	$(BIN)/python -m ruff format --check src tests examples benchmarks conformance fuzz
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/python -m mypy

$(VENV)/.bench: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $(VENV)/.bench

bench-core: $(VENV)/.bench
	$(BIN)/python benchmarks/core.py

bench-echo: $(VENV)/.bench
	$(BIN)/python benchmarks/echo.py --markdown benchmarks/echo-results.md

bench-drivers: $(VENV)/.bench
	$(BIN)/python benchmarks/drivers.py --markdown BENCHMARKS.md

## wrk and nginx (Debian: wrk, nginx-light) are found, or installed with apt-get when root.
bench-http: $(VENV)/.bench
	$(BIN)/python benchmarks/http.py --markdown BENCHMARKS.md

bench: bench-core bench-echo bench-drivers bench-http

## The compiled build (docs/compiled.md). The dev venv above is an editable pure-Python install
## (UNKNOT_PURE_BUILD=1: no extension is built into src/). VENV_C gets a regular install, with
## the hot-path modules compiled by mypyc (an error if they cannot be: UNKNOT_REQUIRE_COMPILED),
## reinstalled whenever a source changes; the tests run against it from this checkout.
VENV_C  ?= .venv-compiled
BIN_C   := $(VENV_C)/bin
SOURCES := $(shell find src -name '*.py' -o -name '*.c') setup.py build_backend.py pyproject.toml

$(VENV_C)/.installed: $(SOURCES)
	$(PY) -m venv $(VENV_C)
	$(BIN_C)/python -m pip install -q --upgrade pip
	UNKNOT_PURE_BUILD=1 $(BIN_C)/python -m pip install -q '.[test,drivers]'  # (the dependencies)
	rm -rf build
	UNKNOT_REQUIRE_COMPILED=1 $(BIN_C)/python -m pip install -q --force-reinstall --no-deps .
	rm -rf build
	$(BIN_C)/python -c 'import unknot, sys; sys.exit(not unknot.compiled)'
	touch $@

venv-compiled: $(VENV_C)/.installed

## The whole suite against the compiled build, and against the same install's pure modules
## (UNKNOT_PURE=1 picks them at import time).
test-compiled: $(VENV_C)/.installed services
	$(BIN_C)/python -c 'import unknot, sys; sys.exit(not unknot.compiled)'
	$(BIN_C)/python -m pytest -q

test-pure: $(VENV_C)/.installed services
	UNKNOT_PURE=1 $(BIN_C)/python -c 'import unknot, sys; sys.exit(unknot.compiled)'
	UNKNOT_PURE=1 $(BIN_C)/python -m pytest -q

## CONFORMANCE_FLAGS: more options for conformance/run.py (CI reuses the pure run's baseline,
## which never imports unknot: --baseline .venv/conformance.json).
conformance-compiled: $(VENV_C)/.installed
	$(BIN_C)/python conformance/run.py --json $(VENV_C)/conformance.json --logs $(VENV_C)/conformance-logs \
	  --jobs $(CONFORMANCE_JOBS) $(CONFORMANCE_FLAGS)

## A fresh clone on a machine without a C compiler: VENV_N gets a plain `pip install .` with
## every C compiler hidden (shims that fail first on PATH, and CC=false); the install must
## succeed, with no error, as the pure-Python build. Then the tests that exercise the install
## itself and the core run against it (NOCC_TESTS; the whole pure suite runs in `make test`,
## on the same sources).
VENV_N    ?= .venv-nocc
NOCC_TESTS ?= tests/core tests/primitives tests/patch
NOCC_SHIMS := $(abspath $(VENV_N))-shims

test-nocc:
	rm -rf $(VENV_N) $(NOCC_SHIMS) build
	mkdir -p $(NOCC_SHIMS)
	for cc in cc gcc clang c89 c99 x86_64-linux-gnu-gcc aarch64-linux-gnu-gcc; do \
	  printf '#!/bin/sh\necho "$$0: no C compiler here (make test-nocc)" >&2\nexit 1\n' \
	    > $(NOCC_SHIMS)/$$cc; chmod +x $(NOCC_SHIMS)/$$cc; done
	$(PY) -m venv $(VENV_N)
	PATH=$(NOCC_SHIMS):$$PATH CC=false $(VENV_N)/bin/python -m pip install -q --upgrade pip
	PATH=$(NOCC_SHIMS):$$PATH CC=false $(VENV_N)/bin/python -m pip install '.[test,drivers]' \
	  > $(VENV_N)/install.log 2>&1 || { cat $(VENV_N)/install.log; exit 1; }
	rm -rf build
	@if grep -i 'error' $(VENV_N)/install.log; then echo "the install reported an error"; exit 1; fi
	$(VENV_N)/bin/python -c 'import unknot, sys; sys.exit(unknot.compiled)'
	$(VENV_N)/bin/python -W error -c 'import unknot'
	PATH=$(NOCC_SHIMS):$$PATH CC=false $(VENV_N)/bin/python -m pytest -q -p no:cacheprovider $(NOCC_TESTS)

## Wheels with the compiled modules for the supported CPythons found here (3.11; 3.13 through
## pyenv), into dist/.
wheels:
	rm -rf build
	UNKNOT_REQUIRE_COMPILED=1 $(PY) -m pip wheel -q --no-deps -w dist .
	rm -rf build
	@if PYENV_VERSION=3.13.0 python3.13 -c '' 2>/dev/null; then \
	  UNKNOT_REQUIRE_COMPILED=1 PYENV_VERSION=3.13.0 python3.13 -m pip wheel -q --no-deps -w dist .; \
	  rm -rf build; \
	else echo "python3.13 not found: no 3.13 wheel"; fi
	ls dist

## Scale: idle echo and HTTP keep-alive connections up to the fd limit, held by one server
## thread (unknot, gevent, asyncio, uvloop, uvicorn): memory per connection, p99 latency and
## a linear model over N, written to BENCHMARKS.md's "Scale" section. About 15 minutes.
scale: $(VENV)/.bench
	$(BIN)/python benchmarks/scale.py --markdown BENCHMARKS.md

## Hostile networks (fuzz/): docs/production.md says what each checks; results in BENCHMARKS.md.
## make fuzz: 1,000,000 generated requests over the protocol layer and a live server
## (hypothesis), then 1,000,000 atheris inputs over the protocol layer where atheris installs.
FUZZ_COUNT ?= 1000000
$(VENV)/.fuzz: $(STAMP)
	$(BIN)/python -m pip install -q atheris \
	  || echo "atheris does not install here: make fuzz skips its part"
	touch $(VENV)/.fuzz

fuzz: $(VENV)/.fuzz
	$(BIN)/python fuzz/fuzz_http.py --count $(FUZZ_COUNT)
	@if $(BIN)/python -c "import atheris" 2>/dev/null; then \
	  $(BIN)/python fuzz/atheris_http.py --count $(FUZZ_COUNT); \
	else echo "atheris is not installed: skipped"; fi

## The CI-sized fuzz run: 20,000 requests.
fuzz-short: $(STAMP)
	$(BIN)/python fuzz/fuzz_http.py --count 20000

## 5,000 connections trickle their heads; a normal client's p99 must stay under 50 ms. The
## server runs with docs/production.md's garbage-collector settings; the attacker is niced
## (a real one is another machine, not a process taking the server's CPU).
slowloris: $(STAMP)
	$(BIN)/python fuzz/slowloris.py --conns 5000 --seconds 20 --max-p99 50 \
	  --gc-freeze --gc-threshold 20000 --attacker-nice 10

## Handlers cancelled at random under load, SOAK_SECONDS long (600 by default; CI runs 60).
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python fuzz/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf .venv .venv-* build dist src/*.egg-info
