#!/usr/bin/env bash
# `make run`: migrate, load the demo, start a Celery worker per queue and the web server.
# The default worker also sweeps for derived work that is owed (no separate beat process).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBUG="${DEBUG:-1}"
PY=.venv/bin/python
mkdir -p var/log
$PY manage.py migrate --noinput
$PY manage.py load_demo
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
.venv/bin/celery -A arenasite worker -Q default -n default@%h --concurrency 2 --loglevel INFO >var/log/worker-default.log 2>&1 &
pids+=($!)
.venv/bin/celery -A arenasite worker -Q gpu -n gpu@%h --pool solo --prefetch-multiplier 1 --loglevel INFO >var/log/worker-gpu.log 2>&1 &
pids+=($!)
.venv/bin/celery -A arenasite worker -Q cpu -n cpu@%h --concurrency 1 --prefetch-multiplier 1 --loglevel INFO >var/log/worker-cpu.log 2>&1 &
pids+=($!)
cat <<MSG

  Image Arena is starting on http://127.0.0.1:8000/
    Vote (annotator):   http://127.0.0.1:8000/vote/demo/      login annotator / arena-vote
    Leaderboard:        http://127.0.0.1:8000/leaderboard/demo/   login researcher / arena-research
    Uploads (staff):    http://127.0.0.1:8000/staff/uploads/  login admin / arena-admin
    Admin:              http://127.0.0.1:8000/admin/
    API schema:         http://127.0.0.1:8000/api/schema/
  Jobs and health (staff): http://127.0.0.1:8000/staff/jobs/
  Worker logs: var/log/worker-default.log, var/log/worker-gpu.log, var/log/worker-cpu.log.  Ctrl-C stops everything.

MSG
$PY manage.py runserver 127.0.0.1:8000
