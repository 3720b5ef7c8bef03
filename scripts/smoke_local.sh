#!/usr/bin/env bash
# `make smoke`: scripts/smoke.py against the system `make up` runs on this machine, as the
# smoke organisation (manage.py smoke_account makes it ready and prints its token).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
RUN=.data/run
PORT="${PORT:-8000}"

if ! { [ -f "$RUN/web.pid" ] && kill -0 "$(cat "$RUN/web.pid")" 2>/dev/null; }; then
  echo "Nothing is running: start the system with 'make up' first." >&2
  exit 1
fi
if [ -f .env ]; then set -a; . ./.env; set +a; fi
# The database and Redis `make up` chose (embedded ones when the environment named none).
if [ -f "$RUN/services.env" ]; then set -a; . "$RUN/services.env"; set +a; fi
export DJANGO_SETTINGS_MODULE=nexus.settings

SMOKE_TOKEN="$(LOG_LEVEL=WARNING $PY manage.py smoke_account)"
SMOKE_METRICS_TOKEN="${METRICS_TOKEN:-$(cat "$RUN/metrics-token" 2>/dev/null || true)}"
export SMOKE_TOKEN SMOKE_METRICS_TOKEN
exec $PY scripts/smoke.py --base-url "http://127.0.0.1:$PORT" "$@"
