#!/usr/bin/env bash
# Builds .venv-interop/ (real mognet 2.0.0 and its pinned dependencies) for the interop tests.
# The venv is reused while interop/requirements.txt and the Python version are unchanged: a stamp
# file inside it holds a hash of both, and any mismatch rebuilds it from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
VENV="${INTEROP_VENV:-.venv-interop}"
REQUIREMENTS=interop/requirements.txt
STAMP="$VENV/resultd-interop.stamp"

version="$("$PYTHON" -c 'import sys; print(sys.version)')"
want="$( { cat "$REQUIREMENTS"; printf '%s\n' "$version"; } | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && "$VENV/bin/python" -c 'import mognet' 2>/dev/null; then
  echo "$VENV is up to date (Python ${version%% *})"
  exit 0
fi
echo "building $VENV with Python ${version%% *} from $REQUIREMENTS"
rm -rf "$VENV"
"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
"$VENV/bin/python" -c 'import mognet, importlib.metadata as m; print("mognet", m.version("mognet"))'
printf '%s\n' "$want" > "$STAMP"
