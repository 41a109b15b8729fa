# Configurable Agents — `make run` serves the dashboard with demo runs, `make test` runs every test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install run test test-sqlite test-postgres lint fix snapshots migrate browser-deps postgres bench \
	bench-live bench-bulk bench-counts bench-overview bench-search bench-compression \
	bench-restart

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)  ## a virtual environment with the app and its test tools

run: install  ## the dashboard on http://127.0.0.1:8000 with demo runs (embedded SQLite)
	$(VENV)/bin/configurable-agents serve --demo

migrate: install  ## create or update the schema of DATABASE_URL (default: the SQLite file)
	$(VENV)/bin/configurable-agents migrate

browser-deps:  ## Debian's chromium and the axe-core checker for the browser tests
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }
	@[ -f tests/browser/node_modules/axe-core/axe.min.js ] || \
		npm install --prefix tests/browser --no-audit --no-fund --silent

postgres:  ## make sure the local PostgreSQL server answers
	@pg_isready -q -h 127.0.0.1 || $(SUDO) pg_ctlcluster --skip-systemctl-redirect \
		$$(ls /etc/postgresql) main start
	@for i in $$(seq 30); do pg_isready -q -h 127.0.0.1 && exit 0; sleep 1; done; \
		echo "PostgreSQL did not start" >&2; exit 1

lint: install  ## ruff and mypy, as CI runs them
	$(VENV)/bin/ruff check app tests bench
	$(VENV)/bin/ruff format --check app tests bench
	$(VENV)/bin/mypy

fix: install  ## let ruff fix and format what it can
	$(VENV)/bin/ruff check --fix app tests bench
	$(VENV)/bin/ruff format app tests bench

test: install browser-deps postgres lint  ## every test, on SQLite and then on PostgreSQL
	CA_TEST_DB=sqlite $(PY) -m pytest
	CA_TEST_DB=postgres $(PY) -m pytest

test-sqlite: install browser-deps  ## the suite on SQLite only
	CA_TEST_DB=sqlite $(PY) -m pytest

test-postgres: install browser-deps postgres  ## the suite on PostgreSQL only
	CA_TEST_DB=postgres $(PY) -m pytest

snapshots: install  ## rewrite the HTML snapshots after an intended change (read the diff!)
	CA_TEST_DB=sqlite $(PY) -m pytest tests/web --snapshot-update

bench: install postgres  ## bench/run.py, live.py, bulk.py, counts.py, overview.py, search.py, compression.py, restart.py; BENCH_ARGS=--quick: small sizes
	$(PY) -m bench.run $(BENCH_ARGS)
	$(PY) -m bench.live $(filter --quick,$(BENCH_ARGS))
	$(PY) -m bench.bulk $(filter --quick,$(BENCH_ARGS))
	$(PY) -m bench.counts $(if $(filter --quick,$(BENCH_ARGS)),--runs 10000)
	$(PY) -m bench.overview $(if $(filter --quick,$(BENCH_ARGS)),--runs 10000 --rounds 1)
	$(PY) -m bench.search $(if $(filter --quick,$(BENCH_ARGS)),--runs 10000 --rounds 1)
	$(PY) -m bench.compression $(if $(filter --quick,$(BENCH_ARGS)),--runs 2000 --repeat 50)
	$(PY) -m bench.restart $(if $(filter --quick,$(BENCH_ARGS)),--runs 40000 --rounds 1)

bench-live: install postgres  ## live pages under load (bench/live.py); BENCH_ARGS=--quick for short windows
	$(PY) -m bench.live $(BENCH_ARGS)

bench-counts: install postgres  ## the filter bar's counts and what they cost a status change (bench/counts.py)
	$(PY) -m bench.counts $(BENCH_ARGS)

bench-overview: install postgres  ## the list with counts against the list before them, needs attention, /metrics (bench/overview.py)
	$(PY) -m bench.overview $(BENCH_ARGS)

bench-search: install postgres  ## the list's search and needs attention against the unfiltered list (bench/search.py)
	$(PY) -m bench.search $(BENCH_ARGS)

bench-compression: install  ## which codec and level gets the pages to a browser soonest, LAN and slow link (bench/compression.py)
	$(PY) -m bench.compression $(BENCH_ARGS)

bench-restart: install postgres  ## restarts at c1 and c10, embedded and queue mode, against a baseline commit (bench/restart.py)
	$(PY) -m bench.restart $(BENCH_ARGS)

bench-bulk: install postgres  ## bulk restart, 1M-run dry run, resume per node (bench/bulk.py); BENCH_ARGS=--quick
	$(PY) -m bench.bulk $(BENCH_ARGS)
