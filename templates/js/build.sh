#!/bin/sh
# Builds {{bundle_id}}.wasm from app.js with componentize-js 0.23.0 (npm; pinned in
# package.json: run `npm install` once). `jco componentize` is not used: jco
# 1.35.0 fails on any --wit path.
# $COMPONENTIZE_JS names another componentize-js; otherwise ./node_modules/.bin's,
# then the one on PATH.
set -eu
cd "$(dirname "$0")"
tool="${COMPONENTIZE_JS:-}"
if [ -z "$tool" ]; then
  if [ -x node_modules/.bin/componentize-js ]; then
    tool=node_modules/.bin/componentize-js
  else
    tool=componentize-js
  fi
fi
if ! command -v "$tool" >/dev/null 2>&1; then
  echo "build.sh: componentize-js not found; run: npm install" >&2
  exit 127
fi
version="$("$tool" --version 2>/dev/null || true)"
case "$version" in
  0.23.0) ;;
  *) echo "build.sh: warning: this template was made for componentize-js 0.23.0, found: $version" >&2 ;;
esac
"$tool" app.js --wit wit --world-name greentic:secrets/bot@1.1.0 -o {{bundle_id}}.wasm
