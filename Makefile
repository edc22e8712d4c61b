# The everyday verbs. CI runs `make test`, exactly what a person runs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/include
export PATRON_PRIVACY_HOME := $(CURDIR)/.local
export GX_ANALYTICS_ENABLED := False
export AIRFLOW_HOME := $(CURDIR)/.local/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
DEMO_AS_OF ?= $(shell date +%F)
DEMO_PATRONS ?= 2000
DEMO_YEARS ?= 3

.PHONY: venv demo test lint bench clean

# Compiled at install, as pip does and the image's install does: with no bytecode on disk
# (and PYTHONDONTWRITEBYTECODE set) every task process compiles Airflow, pandas and
# Presidio from source again, a second or more of each task's start.
$(STAMP): requirements.txt constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv==0.9.5
	$(VENV)/bin/uv pip install --quiet --compile-bytecode --python $(PY) -r requirements.txt \
		-c constraints.txt
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	rm -rf .local/sources .local/exports .local/warehouse.db .local/warehouse.db-wal .local/warehouse.db-shm
	mkdir -p .local/sources .local/exports .local/airflow
	$(PY) -m patron_privacy demo-data --patrons $(DEMO_PATRONS) --years $(DEMO_YEARS) --seed 11 --as-of $(DEMO_AS_OF)
	$(VENV)/bin/airflow db migrate > .local/airflow/migrate.log 2>&1 || (tail -20 .local/airflow/migrate.log; exit 1)
	$(VENV)/bin/airflow dags test koha_nightly_retention $(DEMO_AS_OF) \
		-c '{"dry_run": false, "as_of": "$(DEMO_AS_OF)"}' > .local/airflow/demo-run.log 2>&1 \
		|| (echo "the nightly run failed; see .local/airflow/demo-run.log"; $(PY) -m patron_privacy summary; exit 1)
	$(PY) -m patron_privacy summary
	rm -f .local/demo-files.log
	for s in signups programs squid; do \
		$(PY) -m patron_privacy enforce --source $$s --as-of $(DEMO_AS_OF) --run-id demo-files-$(DEMO_AS_OF) \
			>> .local/demo-files.log 2>&1 || { tail -20 .local/demo-files.log; exit 1; }; done
	$(PY) -m patron_privacy summary --run-id demo-files-$(DEMO_AS_OF)
	$(PY) -m patron_privacy enforce --source libki --as-of $(DEMO_AS_OF) --run-id demo-libki-$(DEMO_AS_OF) \
		> .local/demo-libki.log 2>&1 || { tail -20 .local/demo-libki.log; exit 1; }
	$(PY) -m patron_privacy summary --run-id demo-libki-$(DEMO_AS_OF)
	@# LibCal cannot delete through its API: exit 1 = registrations past their window found at the vendor.
	$(PY) -m patron_privacy libcal --as-of $(DEMO_AS_OF) --run-id demo-libcal-$(DEMO_AS_OF) || test $$? -eq 1
	$(PY) -m patron_privacy publish --latest --as-of $(DEMO_AS_OF)

test: $(STAMP)
	$(VENV)/bin/ruff check include dags plugins tests
	$(VENV)/bin/pytest -q -n 2 --dist loadgroup --durations=15

# The nightly DAGs on the CeleryExecutor with two workers (PostgreSQL, Redis on 127.0.0.1).
.PHONY: distributed
distributed: $(STAMP)
	$(VENV)/bin/pytest -q -p no:cacheprovider -n 0 tests/e2e/test_distributed_celery.py

lint: $(STAMP)
	$(VENV)/bin/ruff check include dags plugins tests
	$(VENV)/bin/ruff format --check include dags plugins tests

# Both reports: the engine at 5 million rows, then the nightly at a large system's scale.
bench: bench-engine bench-scale

.PHONY: bench-engine
bench-engine: $(STAMP)
	$(PY) -m patron_privacy bench --out bench-results/bench.json

# 1 million patrons, 10 million loans (MariaDB Koha, PostgreSQL warehouse): the nightly's
# wall time and per-task memory, enforcement against raw SQL, the release against GROUP BY.
.PHONY: bench-scale
bench-scale: $(STAMP)
	$(PY) -m patron_privacy.bench_scale --out bench-results/bench_scale.json

# The same state, only the loans task alone against the raw-SQL floor (about an hour less).
.PHONY: bench-scale-enforcement
bench-scale-enforcement: $(STAMP)
	$(PY) -m patron_privacy.bench_scale --enforcement-only \
		--out bench-results/bench_scale_enforcement.json

# 2 million facts into PostgreSQL: the facts task's COPY against a plain COPY and INSERT.
.PHONY: bench-facts
bench-facts: $(STAMP)
	$(PY) -m patron_privacy.bench_facts --out bench-results/bench_facts.json

.PHONY: bench-release
bench-release: $(STAMP)
	$(PY) -m patron_privacy.bench_release --out bench-results/bench_release.json

# The Privacy page over a year of nightly history for every source (goal: under 300 ms).
.PHONY: bench-page
bench-page: $(STAMP)
	$(PY) -m patron_privacy.bench_privacy_page --out bench-results/bench_page.json

# The Airflow UI on the demo (make demo first if there is none): airflow standalone with
# the embedded SQLite; prints the address and the login once it answers. Ctrl-C stops it.
AIRFLOW_PORT ?= 8080
.PHONY: airflow
airflow: $(STAMP)
	@test -f $(PATRON_PRIVACY_HOME)/warehouse.db || $(MAKE) demo
	@mkdir -p $(AIRFLOW_HOME)
	@echo "starting airflow standalone (log: $(AIRFLOW_HOME)/standalone.log) ..."
	@PATH="$(CURDIR)/$(VENV)/bin:$$PATH" AIRFLOW__API__PORT=$(AIRFLOW_PORT) PYTHONUNBUFFERED=1 \
		airflow standalone \
		> $(AIRFLOW_HOME)/standalone.log 2>&1 & pid=$$!; \
	trap 'kill $$pid 2>/dev/null; wait $$pid 2>/dev/null' INT TERM EXIT; \
	for _ in $$(seq 1 180); do \
		curl -sf http://127.0.0.1:$(AIRFLOW_PORT)/api/v2/monitor/health > /dev/null && break; \
		kill -0 $$pid 2>/dev/null || { tail -30 $(AIRFLOW_HOME)/standalone.log; exit 1; }; \
		sleep 1; done; \
	pw=$(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated; \
	echo; echo "Airflow UI:   http://localhost:$(AIRFLOW_PORT)/  (Privacy page: http://localhost:$(AIRFLOW_PORT)/plugin/privacy)"; \
	echo "Log in as:    admin / $$($(PY) -c 'import json,sys; print(json.load(open(sys.argv[1]))["admin"])' $$pw)"; \
	echo "              (generated once, kept in $$pw)"; \
	echo "Ctrl-C stops it."; wait $$pid

clean:
	rm -rf .local bench-results
