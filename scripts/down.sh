#!/usr/bin/env bash
# Stop what `make up` started: web, the workers, beat, and the embedded services it started.
set -uo pipefail
cd "$(dirname "$0")/.."
RUN=.data/run

stop() {
  local name=$1 pid_file="$RUN/$1.pid" pid
  pid=$(cat "$pid_file" 2>/dev/null || true)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; fi
    echo "stopped $name"
  fi
  rm -f "$pid_file"
}

stop web
stop beat
for queue in jobs webhooks etl audits periodic; do stop "worker-$queue"; done
stop worker  # the single worker of earlier versions
if [ -f "$RUN/embedded-redis" ]; then
  .venv/bin/python scripts/devservices.py stop-redis && echo "stopped embedded redis"
  rm -f "$RUN/embedded-redis"
fi
if [ -f "$RUN/embedded-postgres" ]; then
  .venv/bin/python scripts/devservices.py stop-postgres 2>/dev/null && echo "stopped embedded postgres"
  rm -f "$RUN/embedded-postgres"
fi
