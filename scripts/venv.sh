#!/usr/bin/env bash
# Builds (or reuses) a Python venv from a pinned requirements file.
# Usage: scripts/venv.sh DIR REQUIREMENTS
# The venv is rebuilt only when the requirements or the Python version change.
set -euo pipefail
dir=$1
requirements=$2
python=${PYTHON:-python3}
stamp="$({ cat "$requirements"; "$python" --version; } | sha256sum | cut -c1-16)"
if [ -x "$dir/bin/python" ] && [ "$(cat "$dir/.stamp" 2>/dev/null)" = "$stamp" ]; then
  exit 0
fi
rm -rf "$dir"
"$python" -m venv "$dir"
"$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
echo "$stamp" > "$dir/.stamp"
