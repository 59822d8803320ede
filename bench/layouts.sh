#!/usr/bin/env bash
# make bench-layouts: wake latency of an HTTP long poll per layout (mognet, Celery, OmniQ,
# Rigatoni) after a foreign write made the way each layout's writer makes it
# (bench/layout_wake.py has the method). A release resultd and a private redis-server, loopback.
#
# Env: BENCH_WAITS (200 per layout), BENCH_LAYOUTS (mognet,celery,omniq,rigatoni),
# BENCH_OUT (bench/out/layouts-<time>.json).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

scripts/ensure-redis.sh
bench_build_resultd
bench_init
bench_start_redis
export RESULTD_CELERY__ENABLED=true RESULTD_OMNIQ__ENABLED=true RESULTD_RIGATONI__ENABLED=true
bench_start_resultd

OUT=${BENCH_OUT:-bench/out/layouts-$(date +%Y%m%d-%H%M%S).json}
mkdir -p "$(dirname "$OUT")"
timeout --signal=INT 900 python3 bench/layout_wake.py --redis-port "$REDIS_PORT" --resultd-port "$RESULTD_PORT" \
  --waits "${BENCH_WAITS:-200}" --layouts "${BENCH_LAYOUTS:-mognet,celery,omniq,rigatoni}" | tee "$BENCH_TMP/layouts.out"
tail -n 1 "$BENCH_TMP/layouts.out" >"$OUT"
bench_log "figures in $OUT"
