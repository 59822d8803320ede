#!/usr/bin/env bash
# make bench-wait: resultd's long-poll figures (bench/wait_bench.py has the method): wake latency
# after a foreign HSET (and mognet's Result.wait() on the same Redis when .venv-interop exists),
# Redis commands per idle waiter, and RSS per held wait with the kit's tools/longpoll_hold.py
# (also against the kit's floor, for a same-run reference).
#
# Env: BENCH_WAITS (1000), BENCH_CONCURRENCY (10), BENCH_IDLE_WAITERS (1000), BENCH_IDLE_SECONDS (10),
# BENCH_HELD (10000), BENCH_HOLD_TIMEOUT (20), BENCH_KIT (../shared/bench), INTEROP_VENV
# (.venv-interop), BENCH_OUT (bench/out/wait-<time>). Defaults take about 2 minutes plus the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

KIT=${BENCH_KIT:-../shared/bench}
[[ -f "$KIT/tools/longpoll_hold.py" ]] || bench_die "the bench kit is not at $KIT (set BENCH_KIT)"
KIT=$(cd "$KIT" && pwd)
HELD=${BENCH_HELD:-10000}

bench_ensure_tools
bench_build_resultd
bench_build_floor "$KIT"

bench_init
bench_start_redis
# resultd must hold every wait of the run from one client address
export RESULTD_WAIT__MAX_WAITERS=$((HELD + 1000)) RESULTD_WAIT__MAX_WAITERS_PER_CLIENT=$((HELD + 1000))
bench_start_resultd
bench_start_floor

status=0
timeout --signal=INT 900 python3 bench/wait_bench.py \
  --redis-port "$REDIS_PORT" --resultd-port "$RESULTD_PORT" --resultd-pid "$RESULTD_PID" \
  --floor-port "$FLOOR_PORT" --floor-pid "$FLOOR_PID" --kit "$KIT" --app "${BENCH_APP:-bench}" \
  --waits "${BENCH_WAITS:-1000}" --concurrency "${BENCH_CONCURRENCY:-10}" \
  --idle-waiters "${BENCH_IDLE_WAITERS:-1000}" --idle-seconds "${BENCH_IDLE_SECONDS:-10}" \
  --held "$HELD" --hold-timeout "${BENCH_HOLD_TIMEOUT:-20}" \
  --out "${BENCH_OUT:-bench/out/wait-$(date +%Y%m%d-%H%M%S)}" || status=$?
exit "$status"
