#!/usr/bin/env bash
# make profile: where resultd's CPU goes in one bench scenario, with perf.
#
# Builds resultd in release with line tables (target/profile), starts a private redis-server and
# resultd on free loopback ports, seeds the bench's records (bench/throughput.py's seeding), runs
# one bounded wrk load while `perf record -g` samples resultd, and prints the hottest symbols and
# the report path. Stops everything it started, by PID, on exit.
#
# Env: PROFILE_SCENARIO (hot: GET the b100 record; also hot_value, cold, cold_value, running,
# put), PROFILE_DURATION (8 s), PROFILE_COLD_IDS (20000), PROFILE_OUT (bench/out/profile-<time>),
# RESULTD_* settings (e.g. RESULTD_CACHE__MAX_BYTES=0).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/lib.sh
source bench/lib.sh

SCENARIO=${PROFILE_SCENARIO:-hot}
DURATION=${PROFILE_DURATION:-8}
COLD_IDS=${PROFILE_COLD_IDS:-20000}
OUT=${PROFILE_OUT:-bench/out/profile-$(date -u +%Y%m%dT%H%M%SZ)}
[[ "$DURATION" =~ ^[0-9]+$ && "$COLD_IDS" =~ ^[0-9]+$ ]] || bench_die "PROFILE_DURATION and PROFILE_COLD_IDS are whole numbers"
command -v perf >/dev/null || bench_die "perf is missing (apt-get install -y linux-perf)"

bench_ensure_tools
bench_log "cargo build --release --locked with line tables (target/profile)"
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only cargo build --release --locked --target-dir target/profile >&2
RESULTD_BIN=$PWD/target/profile/release/resultd

bench_init
bench_start_redis
bench_start_resultd
mkdir -p "$OUT"
timeout 600 python3 bench/throughput.py --redis-port "$REDIS_PORT" --redis-pid "$REDIS_PID" \
  --resultd "http://127.0.0.1:$RESULTD_PORT" --app "${BENCH_APP:-bench}" --cold-ids "$COLD_IDS" \
  --scenarios "$SCENARIO" --duration "$DURATION" --resultd-pid "$RESULTD_PID" --profile-pid "$RESULTD_PID" --out "$OUT"
perf report -i "$OUT/perf.data" --children --percent-limit 1.5 --stdio --sort symbol -g none 2>/dev/null |
  grep -v '^$' | head -60
bench_log "report: perf report -i $OUT/perf.data"
