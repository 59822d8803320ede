#!/usr/bin/env bash
# Generates the Python and TypeScript clients from openapi/openapi.json into target/clients/
# with the pinned generators (tests/clients/python/requirements.txt, tests/clients/ts/package-lock.json),
# installing Debian's nodejs and npm when node is missing. Any generator warning fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: node/npm; install them (apt-get install -y nodejs npm) or run as root" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q nodejs npm
fi
scripts/venv.sh .venv-clients tests/clients/python/requirements.txt
out=target/clients
mkdir -p "$out/ts"
(cd tests/clients/ts && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

log=$(.venv-clients/bin/openapi-python-client generate --path openapi/openapi.json \
  --output-path "$out/python" --overwrite --config tests/clients/python/config.yaml 2>&1)
if grep -qiE 'warning|unable|error' <<<"$log"; then
  echo "$log" >&2
  echo "openapi-python-client warned about openapi/openapi.json" >&2
  exit 1
fi

log=$(cd tests/clients/ts && npx --no-install openapi-typescript ../../../openapi/openapi.json \
  -o "../../../$out/ts/schema.d.ts" 2>&1)
if grep -qiE 'warn|error' <<<"$log"; then
  echo "$log" >&2
  echo "openapi-typescript warned about openapi/openapi.json" >&2
  exit 1
fi
# The TypeScript program type-checks against the generated paths.
(cd tests/clients/ts && npx --no-install tsc -p .)
echo "clients generated in $out/python and $out/ts"
