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

.PHONY: test-faults up down logs test lint migrations-check security pytest bench install install-dev clean browser-deps

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

pytest: $(DEV_STAMP) browser-deps
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) scripts/run_pytest.sh

test: lint migrations-check security pytest

bench: $(RUNTIME_STAMP)
	@DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/run.py

clean: down
	rm -rf .data staticfiles

# Faults injected into a running system (workers killed, Redis and PostgreSQL stopped, a
# webhook receiver down) on embedded servers the suite starts and stops itself.
test-faults: $(DEV_STAMP)
	$(PY) scripts/run_faults.py
