#!/usr/bin/env sh
# Builds {{bundle_id}}.wasm (beside bundle.toml) from src/lib.rs for wasm32-wasip2.
set -eu
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{bundle_id_snake}}.wasm" {{bundle_id}}.wasm
echo "built {{bundle_id}}.wasm"
