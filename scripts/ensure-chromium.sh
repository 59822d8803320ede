#!/usr/bin/env bash
# Installs Debian's chromium (and a font for its screenshots) for the browser test of the docs
# page, when it is missing.
set -euo pipefail
if command -v chromium >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "chromium is missing; install it (apt-get install -y chromium) or run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends chromium fonts-dejavu-core
