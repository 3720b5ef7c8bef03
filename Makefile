# NexusAPI. `make up` runs the system, `make test` runs every check. Both install what they
# need into .venv first.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed

# Tests use the database and Redis named here (CI and a machine with local services);
# pytest creates and drops its own test database on that server.
TEST_DATABASE_URL ?= $(or $(DATABASE_URL),postgres://postgres@127.0.0.1:5432/nexus)
TEST_REDIS_URL ?= $(or $(REDIS_URL),redis://127.0.0.1:6379/15)

.PHONY: test-faults up down logs test lint migrations-check security pytest bench install install-dev clean browser-deps \
	prometheus-deps promtool-check

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(RUNTIME_STAMP): requirements.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt | $(VENV)/bin/python
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(RUNTIME_STAMP) $@

install: $(RUNTIME_STAMP)
install-dev: $(DEV_STAMP)

up: $(RUNTIME_STAMP)
	@scripts/up.sh

down:
	@scripts/down.sh

LOG_FILES := $(addprefix .data/logs/,web.log worker-jobs.log worker-webhooks.log worker-etl.log worker-periodic.log beat.log)

logs:
	@mkdir -p .data/logs && touch $(LOG_FILES)
	tail -n 50 -F $(LOG_FILES)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

migrations-check: $(DEV_STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) NEXUS_TESTING=true \
		$(PY) manage.py makemigrations --check --dry-run

security: $(DEV_STAMP)
	$(VENV)/bin/bandit -q -c pyproject.toml -r .

# The browser tests drive Debian's Chromium (never a downloaded browser).
browser-deps:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "Installing Chromium (Debian package) for the browser tests"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# promtool (alert rules, their unit tests, the example scrape config) comes from Debian's
# prometheus package. Where installing it starts the package's Prometheus service (systemd
# hosts such as CI runners), that service is stopped again: the checks need only the binary.
prometheus-deps:
	@command -v promtool >/dev/null 2>&1 || { \
		echo "Installing promtool (Debian package prometheus) for the alerting checks"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		WAS=$$(systemctl is-active prometheus 2>/dev/null || true); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
		if [ "$$WAS" != active ] && systemctl is-active --quiet prometheus 2>/dev/null; then \
			$$SUDO systemctl disable --now prometheus >/dev/null 2>&1 || true; fi; }

# check config also opens the files the config names, so it checks a copy beside a
# stand-in token file (the real one is a deployment secret).
promtool-check: prometheus-deps
	promtool check rules ops/prometheus/alerts.yml
	promtool test rules ops/prometheus/alerts_test.yml
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
		cp ops/prometheus/prometheus.yml ops/prometheus/alerts.yml "$$tmp"/ && \
		echo stand-in > "$$tmp/metrics_token" && \
		echo "promtool check config ops/prometheus/prometheus.yml" && \
		promtool check config "$$tmp/prometheus.yml"

pytest: $(DEV_STAMP) browser-deps prometheus-deps
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) scripts/run_pytest.sh

test: lint migrations-check security promtool-check pytest

bench: $(RUNTIME_STAMP)
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/run.py

clean: down
	rm -rf .data staticfiles

# Faults injected into a running system (workers killed, Redis and PostgreSQL stopped, a
# webhook receiver down) on embedded servers the suite starts and stops itself.
test-faults: $(DEV_STAMP)
	$(PY) scripts/run_faults.py
