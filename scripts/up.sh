#!/usr/bin/env bash
# Start the whole system in the background: web (gunicorn), one Celery worker per queue
# (jobs, webhooks, etl, audits, periodic) and beat.
# Uses DATABASE_URL / REDIS_URL when set; otherwise starts the embedded PostgreSQL and
# Redis (scripts/devservices.py). Running it again is harmless: what runs is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=.venv/bin/python
RUN=.data/run
LOGS=.data/logs
PORT="${PORT:-8000}"
mkdir -p "$RUN" "$LOGS"

if [ -f .env ]; then set -a; . ./.env; set +a; fi

# Embedded services only for what the environment does not provide.
: > "$RUN/services.env"
if [ -z "${DATABASE_URL:-}" ]; then
  echo "DATABASE_URL unset: starting the embedded PostgreSQL (data in .data/postgres)"
  $PY scripts/devservices.py start-postgres 2>/dev/null >> "$RUN/services.env"
  echo "postgres" > "$RUN/embedded-postgres"
fi
if [ -z "${REDIS_URL:-}" ]; then
  echo "REDIS_URL unset: starting the embedded Redis"
  $PY scripts/devservices.py start-redis >> "$RUN/services.env"
  echo "redis" > "$RUN/embedded-redis"
fi
export DEBUG="${DEBUG:-true}"
# A development system: webhook receivers and data sources on this machine are allowed
# (the smoke test serves both); set WEBHOOK_ALLOW_PRIVATE_NETWORKS=false to try the guard.
export WEBHOOK_ALLOW_PRIVATE_NETWORKS="${WEBHOOK_ALLOW_PRIVATE_NETWORKS:-true}"
# Emails (invitations) are written as files, one per message, to open and follow the link.
export EMAIL_BACKEND="${EMAIL_BACKEND:-django.core.mail.backends.filebased.EmailBackend}"
export EMAIL_FILE_PATH="${EMAIL_FILE_PATH:-$PWD/.data/mail}"
# /metrics asks for a token, as in production: one is made once and kept in .data/run.
if [ -z "${METRICS_TOKEN:-}" ]; then
  [ -s "$RUN/metrics-token" ] || ( umask 077; $PY -c "import secrets; print(secrets.token_urlsafe(32))" > "$RUN/metrics-token" )
  METRICS_TOKEN="$(cat "$RUN/metrics-token")"
fi
export METRICS_TOKEN
# Commands run by hand (manage.py ...) load this file to see the same system.
echo "DEBUG=$DEBUG" >> "$RUN/services.env"
set -a; . "$RUN/services.env"; set +a

export DJANGO_SETTINGS_MODULE=nexus.settings
METRICS_DIR="$PWD/.data/prometheus"
export LOG_FORMAT="${LOG_FORMAT:-json}"

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

$PY scripts/devservices.py ensure-database
echo "Applying migrations"
LOG_LEVEL=WARNING $PY manage.py migrate_schemas --noinput -v 0
LOG_LEVEL=WARNING $PY manage.py sync_template_schema -v 0
LOG_LEVEL=WARNING $PY manage.py collectstatic --noinput -v 0

any_worker_alive() {
  local queue
  for queue in jobs webhooks etl audits periodic; do alive "$RUN/worker-$queue.pid" && return 0; done
  return 1
}
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

if alive "$RUN/web.pid"; then
  echo "web already running (pid $(cat "$RUN/web.pid"))"
elif port_taken; then
  echo "Port $PORT is already in use by another program; stop it or run: PORT=8001 make up" >&2
  exit 1
else
  # gunicorn runs several worker processes, and the Celery workers count too: /metrics
  # aggregates all of their counts from here. Emptied only when nothing is running that
  # still writes to it (a worker left running keeps its files).
  if ! alive "$RUN/beat.pid" && ! any_worker_alive; then rm -rf "$METRICS_DIR"; fi
  mkdir -p "$METRICS_DIR"
  PROMETHEUS_MULTIPROC_DIR="$METRICS_DIR" .venv/bin/gunicorn nexus.wsgi:application -c nexus/gunicorn.conf.py \
    --bind "127.0.0.1:$PORT" --daemon --pid "$RUN/web.pid" \
    --error-logfile "$LOGS/web.log" --capture-output
fi
mkdir -p "$METRICS_DIR"
# Celery logs through the app's structlog configuration to stderr, so each runs in the
# background with its output appended to its log file.
start_bg() {
  local name=$1; shift
  # The workers count into the same directory as web, so /metrics shows their series.
  PROMETHEUS_MULTIPROC_DIR="$METRICS_DIR" setsid nohup "$@" >> "$LOGS/$name.log" 2>&1 < /dev/null &
  echo $! > "$RUN/$name.pid"
}
# One worker per queue, so a slow kind of work (an organisation's long ETL run or audit)
# never holds the workers of another (AI jobs, webhook deliveries, beat's periodic tasks).
PREFIX="${CELERY_QUEUE_PREFIX:-}"
for queue in jobs webhooks etl audits periodic; do
  case $queue in jobs|etl|audits) concurrency=2 ;; *) concurrency=1 ;; esac
  if alive "$RUN/worker-$queue.pid"; then
    echo "worker-$queue already running (pid $(cat "$RUN/worker-$queue.pid"))"
  else
    start_bg "worker-$queue" .venv/bin/celery -A nexus worker --loglevel INFO \
      --queues "$PREFIX$queue" --hostname "$queue@%h" --concurrency "$concurrency"
  fi
done
if alive "$RUN/beat.pid"; then
  echo "beat already running (pid $(cat "$RUN/beat.pid"))"
else
  start_bg beat .venv/bin/celery -A nexus beat --loglevel INFO --schedule "$RUN/celerybeat-schedule"
fi

printf "Waiting for http://127.0.0.1:%s/health " "$PORT"
for _ in $(seq 1 60); do
  if alive "$RUN/web.pid" && curl -fsS "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then
    echo " up"
    echo
    echo "Demo organisations and logins:"
    LOG_LEVEL=WARNING $PY manage.py seed_demo --no-tokens
    LOG_LEVEL=WARNING $PY manage.py seed_demo_content | sed 's/^/  /'
    echo
    echo "NexusAPI is running at http://127.0.0.1:$PORT/"
    echo "  Sign in:    http://127.0.0.1:$PORT/accounts/login/  (admin@acme.test / ${DEMO_PASSWORD:-nexus-demo-password})"
    echo "  API token:  .venv/bin/python manage.py issue_token --email admin@acme.test"
    echo "  API docs:   http://127.0.0.1:$PORT/api/docs/"
    if [ -s "$RUN/metrics-token" ] && [ "$METRICS_TOKEN" = "$(cat "$RUN/metrics-token")" ]; then
      echo "  Metrics:    curl -H \"Authorization: Bearer \$(cat $RUN/metrics-token)\" http://127.0.0.1:$PORT/metrics"
    else
      echo "  Metrics:    curl -H \"Authorization: Bearer \$METRICS_TOKEN\" http://127.0.0.1:$PORT/metrics"
    fi
    echo "  Emails:     $EMAIL_FILE_PATH/ (invitations, one file per message)"
    echo "  Smoke test: make smoke"
    echo "  Logs:       make logs        Stop: make down"
    exit 0
  fi
  printf "."
  sleep 1
done
echo " not answering after 60 s; see $LOGS/web.log" >&2
exit 1
