# Shell helpers of the benchmarks (sourced by bench/run.sh and bench/wait.sh).
# Every process started here is recorded and stopped by PID on exit; everything is loopback.

BENCH_PIDS=()
BENCH_TMP=""

bench_log() { printf '# %s\n' "$*" >&2; }
bench_die() { printf 'bench: %s\n' "$*" >&2; exit 2; }

# Stops what this script started, newest first, by PID; removes the temp dir.
bench_cleanup() {
  local i pid
  for ((i = ${#BENCH_PIDS[@]} - 1; i >= 0; i--)); do
    pid=${BENCH_PIDS[$i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  BENCH_PIDS=()
  [[ -n "$BENCH_TMP" && -d "$BENCH_TMP" ]] && rm -rf "$BENCH_TMP"
  BENCH_TMP=""
}

bench_init() {
  BENCH_TMP=$(mktemp -d /tmp/resultd-bench.XXXXXX)
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
}

bench_free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# redis-server, wrk and (with BENCH_WEBDIS=1, the default) webdis from Debian's packages, when missing.
bench_ensure_tools() {
  scripts/ensure-redis.sh
  local missing=()
  command -v wrk >/dev/null || missing+=(wrk)
  [[ "${BENCH_WEBDIS:-1}" == 1 ]] && ! command -v webdis >/dev/null && missing+=(webdis)
  [[ ${#missing[@]} -eq 0 ]] && return 0
  [[ "$(id -u)" -eq 0 ]] || bench_die "${missing[*]} missing; install (apt-get install -y ${missing[*]}) or run as root"
  DEBIAN_FRONTEND=noninteractive apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
}

# Waits until URL answers HTTP (any status), or dies after 60 s.
bench_wait_http() {
  local url=$1 pid=$2 name=$3
  for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || bench_die "$name (pid $pid) exited; see $BENCH_TMP/$name.log: $(tail -5 "$BENCH_TMP/$name.log" 2>/dev/null)"
    curl -s -o /dev/null --max-time 1 "$url" && return 0
    sleep 0.1
  done
  bench_die "$name did not answer on $url"
}

# Starts a private redis-server on a free loopback port: sets REDIS_PORT and REDIS_PID.
bench_start_redis() {
  REDIS_PORT=$(bench_free_port)
  mkdir -p "$BENCH_TMP/redis"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$BENCH_TMP/redis" --logfile "$BENCH_TMP/redis.log" >/dev/null 2>&1 &
  REDIS_PID=$!
  BENCH_PIDS+=("$REDIS_PID")
  for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
  done
  redis-cli -p "$REDIS_PORT" ping | grep -q PONG || bench_die "redis-server did not start"
  bench_log "redis-server $(redis-server --version | awk '{print $3}') pid $REDIS_PID on 127.0.0.1:$REDIS_PORT"
}

bench_build_resultd() {
  bench_log "cargo build --release --locked (resultd)"
  cargo build --release --locked >&2
  RESULTD_BIN=$PWD/target/release/resultd
}

# The kit's floor, built in a copy outside the kit (target/ is never committed).
bench_build_floor() {
  local kit=$1 src=$PWD/target/bench-floor/src
  mkdir -p "$src"
  cp -a "$kit/rust_baseline/." "$src/"
  bench_log "CARGO_TARGET_DIR=target/bench-floor cargo build --release (kit floor, copy in $src)"
  (cd "$src" && CARGO_TARGET_DIR="$PWD/.." cargo build --release >&2)
  FLOOR_BIN=$PWD/target/bench-floor/release/rust_baseline
  CEILING_BIN=$PWD/target/bench-floor/release/http_ceiling
}

# Starts resultd against the private Redis on a free port: sets RESULTD_PORT and RESULTD_PID.
# Extra RESULTD_* settings come from the environment of the caller.
bench_start_resultd() {
  RESULTD_PORT=$(bench_free_port)
  RESULTD_STORE="redis://127.0.0.1:$REDIS_PORT/0" RESULTD_LISTEN="127.0.0.1:$RESULTD_PORT" \
    RESULTD_DEFAULT_APP="${BENCH_APP:-bench}" "$RESULTD_BIN" serve >"$BENCH_TMP/resultd.log" 2>&1 &
  RESULTD_PID=$!
  BENCH_PIDS+=("$RESULTD_PID")
  bench_wait_http "http://127.0.0.1:$RESULTD_PORT/health/ready" "$RESULTD_PID" resultd
  bench_log "resultd pid $RESULTD_PID on 127.0.0.1:$RESULTD_PORT (app ${BENCH_APP:-bench})"
}

# Starts the floor: sets FLOOR_PORT and FLOOR_PID.
bench_start_floor() {
  FLOOR_PORT=$(bench_free_port)
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" BIND="127.0.0.1:$FLOOR_PORT" \
    "$FLOOR_BIN" >"$BENCH_TMP/floor.log" 2>&1 &
  FLOOR_PID=$!
  BENCH_PIDS+=("$FLOOR_PID")
  bench_wait_http "http://127.0.0.1:$FLOOR_PORT/results/b100" "$FLOOR_PID" floor
  bench_log "floor pid $FLOOR_PID on 127.0.0.1:$FLOOR_PORT"
}

# Starts the kit's HTTP-only ceiling (no Redis): sets CEILING_PORT and CEILING_PID.
bench_start_ceiling() {
  CEILING_PORT=$(bench_free_port)
  BIND="127.0.0.1:$CEILING_PORT" "$CEILING_BIN" >"$BENCH_TMP/ceiling.log" 2>&1 &
  CEILING_PID=$!
  BENCH_PIDS+=("$CEILING_PID")
  bench_wait_http "http://127.0.0.1:$CEILING_PORT/results/b100" "$CEILING_PID" ceiling
  bench_log "http ceiling pid $CEILING_PID on 127.0.0.1:$CEILING_PORT"
}

# Starts webdis (Debian's package) on the private Redis with its own config in the temp dir, in
# the foreground so its PID is ours: sets WEBDIS_PORT and WEBDIS_PID.
bench_start_webdis() {
  WEBDIS_PORT=$(bench_free_port)
  cat >"$BENCH_TMP/webdis.json" <<JSON
{
  "redis_host": "127.0.0.1", "redis_port": $REDIS_PORT, "redis_auth": null,
  "http_host": "127.0.0.1", "http_port": $WEBDIS_PORT, "threads": 2, "pool_size": 20,
  "daemonize": false, "database": 0, "verbosity": 1, "logfile": "$BENCH_TMP/webdis.log"
}
JSON
  webdis "$BENCH_TMP/webdis.json" >"$BENCH_TMP/webdis.out" 2>&1 &
  WEBDIS_PID=$!
  BENCH_PIDS+=("$WEBDIS_PID")
  bench_wait_http "http://127.0.0.1:$WEBDIS_PORT/PING" "$WEBDIS_PID" webdis
  bench_log "webdis $(dpkg-query -W -f '${Version}' webdis 2>/dev/null) pid $WEBDIS_PID on 127.0.0.1:$WEBDIS_PORT"
}
