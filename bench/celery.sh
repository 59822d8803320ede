#!/usr/bin/env bash
# make bench-celery: wake latency of an HTTP long poll on a real Celery 5.7.0 worker against
# Celery's own AsyncResult.get() in the same run (interop/celery/wake_latency.py has the method),
# plus the channel gauge after the run. A release resultd, a private redis-server (broker, result
# backend and resultd on one database) and one worker (--pool=solo), all on loopback.
#
# Env: BENCH_CELERY_TASKS (200), CELERY_VENV (.venv-celery, built by make celery-venv).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

TASKS=${BENCH_CELERY_TASKS:-200}
PYTHON=${CELERY_VENV:-.venv-celery}/bin/python
[[ -x "$PYTHON" ]] || bench_die "$PYTHON is missing: run make celery-venv"
PYTHON=$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")

scripts/ensure-redis.sh
bench_build_resultd
bench_init
bench_start_redis
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0"
export RESULTD_CELERY__ENABLED=true RESULTD_WAIT__MAX_SECONDS=300
bench_start_resultd

(cd interop/celery && exec env CELERY_BROKER_URL="$REDIS_URL" CELERY_RESULT_BACKEND="$REDIS_URL" \
  "$PYTHON" -m celery -A tasks worker --pool=solo -c 1 --without-heartbeat --without-gossip \
  --without-mingle -l warning) >"$BENCH_TMP/worker.log" 2>&1 &
WORKER_PID=$!
BENCH_PIDS+=("$WORKER_PID")
bench_log "celery worker pid $WORKER_PID ($("$PYTHON" -c 'import celery; print(celery.__version__)'))"

status=0
timeout --signal=INT 600 "$PYTHON" interop/celery/wake_latency.py "$TASKS" \
  --redis "$REDIS_URL" --resultd "http://127.0.0.1:$RESULTD_PORT" >"$BENCH_TMP/report.out" || status=$?
python3 bench/celery_table.py <"$BENCH_TMP/report.out" || status=$?
exit "$status"
