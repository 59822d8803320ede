#!/usr/bin/env bash
# make bench: resultd's HTTP throughput against the bench kit's Rust floor and FastAPI baselines,
# interleaved in the same run (bench/throughput.py has the method; docs/performance.md the figures).
#
# Builds release binaries (resultd; the kit's floor in a copy under target/bench-floor), a venv for
# FastAPI (.venv-bench), starts a private redis-server, seeds mognet records for resultd and the
# kit's res:* keys, starts the three servers on free loopback ports, runs the rounds and stops
# everything it started, by PID, on exit.
#
# Peers: the kit's axum+fred floor, its HTTP-only ceiling (hot scenarios only), webdis (Debian's
# package; BENCH_WEBDIS=0 leaves it out) and FastAPI.
#
# Env: BENCH_ROUNDS (3), BENCH_DURATION (10, seconds per wrk run), BENCH_SCENARIOS ("hot hot_value
# cold cold_value running put put_spread"; also value_inflate; hash/value name hot/hot_value),
# BENCH_COLD_IDS (100000 distinct done results of the cold scenarios), BENCH_CACHE_BYTES
# (resultd's cache.max_bytes when set, e.g. 8388608: far smaller than the cold set), BENCH_PIN_GEN (CPUs for wrk,
# e.g. 0), BENCH_KIT (../shared/bench), BENCH_OUT (bench/out/throughput-<time>). Defaults take
# about 30 minutes plus the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

KIT=${BENCH_KIT:-../shared/bench}
ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
SCENARIOS=${BENCH_SCENARIOS:-hot hot_value cold cold_value running put put_spread}
COLD_IDS=${BENCH_COLD_IDS:-100000}
[[ -f "$KIT/run_bench.sh" ]] || bench_die "the bench kit is not at $KIT (set BENCH_KIT)"
KIT=$(cd "$KIT" && pwd)
[[ "$ROUNDS" =~ ^[0-9]+$ && "$DURATION" =~ ^[0-9]+$ && "$COLD_IDS" =~ ^[0-9]+$ ]] ||
  bench_die "BENCH_ROUNDS, BENCH_DURATION and BENCH_COLD_IDS are whole numbers"

bench_ensure_tools
bench_build_resultd
bench_build_floor "$KIT"
bench_log "venv .venv-bench from $KIT/python_baseline/requirements.txt"
scripts/venv.sh .venv-bench "$KIT/python_baseline/requirements.txt"

bench_init
bench_start_redis
bash "$KIT/run_bench.sh" seed --redis-port "$REDIS_PORT" >&2

# BENCH_CACHE_BYTES sets resultd's cache.max_bytes: a cache far smaller than the cold set makes
# the cold scenarios mostly miss. Unset, resultd runs with its own settings.
if [[ -n "${BENCH_CACHE_BYTES:-}" ]]; then
  export RESULTD_CACHE__MAX_BYTES=$BENCH_CACHE_BYTES
fi
bench_start_resultd
bench_start_floor
bench_start_ceiling
WEBDIS_URL=""
if [[ "${BENCH_WEBDIS:-1}" == 1 ]]; then
  bench_start_webdis
  WEBDIS_URL="http://127.0.0.1:$WEBDIS_PORT"
fi
FASTAPI_PORT=$(bench_free_port)
REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" PYTHONDONTWRITEBYTECODE=1 \
  .venv-bench/bin/uvicorn app:app --app-dir "$KIT/python_baseline" --host 127.0.0.1 --port "$FASTAPI_PORT" \
  --workers 1 --no-access-log --log-level warning >"$BENCH_TMP/fastapi.log" 2>&1 &
FASTAPI_PID=$!
BENCH_PIDS+=("$FASTAPI_PID")
bench_wait_http "http://127.0.0.1:$FASTAPI_PORT/results/b100" "$FASTAPI_PID" fastapi
bench_log "fastapi (uvicorn, 1 worker) pid $FASTAPI_PID on 127.0.0.1:$FASTAPI_PORT"

# Every wrk run is bounded by its duration; the whole measurement by its plan plus a margin
# (seeding the cold set included): per size and round, resultd before each of up to 4 peers.
combos=0
for s in $SCENARIOS; do
  case $s in put | put_spread | cold | cold_value | running) combos=$((combos + 1));; *) combos=$((combos + 2));; esac
done
budget=$((combos * ROUNDS * 8 * (DURATION + 2) + 120 + COLD_IDS / 500))
status=0
timeout --signal=INT "$budget" python3 bench/throughput.py \
  --redis-port "$REDIS_PORT" --redis-pid "$REDIS_PID" \
  --resultd "http://127.0.0.1:$RESULTD_PORT" --resultd-pid "$RESULTD_PID" \
  --floor "http://127.0.0.1:$FLOOR_PORT" --floor-pid "$FLOOR_PID" \
  --fastapi "http://127.0.0.1:$FASTAPI_PORT" --fastapi-pid "$FASTAPI_PID" \
  --ceiling "http://127.0.0.1:$CEILING_PORT" --ceiling-pid "$CEILING_PID" \
  ${WEBDIS_URL:+--webdis "$WEBDIS_URL" --webdis-pid "$WEBDIS_PID"} --cold-ids "$COLD_IDS" \
  --app "${BENCH_APP:-bench}" --rounds "$ROUNDS" --duration "$DURATION" --scenarios "$SCENARIOS" \
  ${BENCH_PIN_GEN:+--pin-gen "$BENCH_PIN_GEN"} ${BENCH_OUT:+--out "$BENCH_OUT"} || status=$?
exit "$status"
