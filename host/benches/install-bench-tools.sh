#!/usr/bin/env bash
# Installs what the throughput part of the bench needs, once:
# - wrk, the load generator (Debian package);
# - wasmtime-cli at exactly the wasmtime version gtc embeds, from crates.io, into
#   target/bench-tools (cached: the build takes a while).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
version="$(grep -A1 'name = "wasmtime"' "$root/Cargo.lock" | sed -n 's/^version = "\(.*\)"/\1/p' | head -1)"
if ! command -v wrk >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq wrk; else sudo apt-get install -y wrk; fi
fi
if ! "$root/target/bench-tools/bin/wasmtime" --version 2>/dev/null | grep -q " $version "; then
  cargo install wasmtime-cli --version "$version" --locked --root "$root/target/bench-tools"
fi
"$root/target/bench-tools/bin/wasmtime" --version
wrk --version 2>&1 | head -1 || true
