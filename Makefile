# Every target builds its own virtual environment, so a fresh clone needs only Python 3.11+.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: demo test services lint typecheck venv conformance bench bench-core bench-echo bench-drivers bench-http scale clean \
	fuzz fuzz-short slowloris soak

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,drivers]'
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
	$(BIN)/python -m mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

## CPython's own test modules (socket, ssl, threading...), unpatched and under unknot.patch();
## fails on a test that regresses under the patch and is not in conformance/disabled.txt.
## Report: conformance/README.md explains it; the full results go to $(VENV)/conformance.json.
conformance: $(STAMP)
	$(BIN)/python conformance/run.py --json $(VENV)/conformance.json --logs $(VENV)/conformance-logs

lint: $(STAMP)
	$(BIN)/python -m ruff check src tests examples benchmarks conformance fuzz
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

## 5,000 connections trickle their heads; a normal client's p99 must stay under 50 ms.
slowloris: $(STAMP)
	$(BIN)/python fuzz/slowloris.py --conns 5000 --seconds 20 --max-p99 50

## Handlers cancelled at random under load, SOAK_SECONDS long (600 by default; CI runs 60).
SOAK_SECONDS ?= 600
soak: $(STAMP)
	$(BIN)/python fuzz/soak.py --seconds $(SOAK_SECONDS)

clean:
	rm -rf .venv .venv-* build dist src/*.egg-info
