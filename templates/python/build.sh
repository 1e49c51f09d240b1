#!/bin/sh
# Builds {{bundle_id}}.wasm from app.py with componentize-py 0.25.1 (PyPI):
#   pip install componentize-py==0.25.1
# $COMPONENTIZE_PY names another componentize-py; otherwise the one on PATH.
set -eu
cd "$(dirname "$0")"
tool="${COMPONENTIZE_PY:-componentize-py}"
if ! command -v "$tool" >/dev/null 2>&1; then
  echo "build.sh: componentize-py not found; install it: pip install componentize-py==0.25.1" >&2
  exit 127
fi
version="$("$tool" --version 2>/dev/null || true)"
case "$version" in
  *" 0.25.1") ;;
  *) echo "build.sh: warning: this template was made for componentize-py 0.25.1, found: $version" >&2 ;;
esac
# The bindings (module wit_world) are generated from wit/ on every build.
"$tool" -d wit -w greentic:secrets/bot@1.1.0 componentize app -o {{bundle_id}}.wasm
