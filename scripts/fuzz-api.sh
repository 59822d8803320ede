#!/usr/bin/env bash
# Fuzzes the served contract with schemathesis: a real resultd over a real redis-server, both on
# free loopback ports, both stopped by PID at the end. Bounded by --max-examples and a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/venv.sh .venv-fuzz fuzz/requirements.txt
cargo build --locked -q --bin resultd
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
redis_pid=$!
http_port=$(free_port)
RESULTD_LISTEN=127.0.0.1:$http_port RESULTD_STORE=redis://127.0.0.1:$redis_port/0 RESULTD_WAIT__MAX_SECONDS=1 RESULTD_CELERY__ENABLED=true RESULTD_OMNIQ__ENABLED=true RESULTD_RIGATONI__ENABLED=true \
  target/debug/resultd serve >"$work/resultd.log" 2>&1 &
resultd_pid=$!
cleanup() { kill "$resultd_pid" "$redis_pid" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$http_port/health/ready" >/dev/null && break
  sleep 0.1
done
timeout 900 .venv-fuzz/bin/schemathesis --config-file fuzz/schemathesis.toml run openapi/openapi.json \
  --url "http://127.0.0.1:$http_port" --checks all --max-examples "${FUZZ_EXAMPLES:-10}" --seed "${FUZZ_SEED:-1}" \
  --workers 2 --continue-on-failure --phases examples,fuzzing,stateful "$@"
