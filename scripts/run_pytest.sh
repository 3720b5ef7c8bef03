#!/usr/bin/env bash
# pytest with the exit code that means "no tests were collected" (5) treated as failure:
# a suite that silently runs nothing must not pass.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pytest -n "${PYTEST_WORKERS:-2}" "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: failing" >&2
  exit 1
fi
exit "$status"
