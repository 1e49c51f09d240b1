#!/usr/bin/env sh
# Builds the component and puts it beside bundle.toml: {{crate_name}}.wasm
set -eu
cd "$(dirname "$0")"
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
cargo build --release --target wasm32-wasip2
cp "${CARGO_TARGET_DIR:-target}/wasm32-wasip2/release/{{crate_name}}.wasm" {{crate_name}}.wasm
echo "built {{crate_name}}.wasm"
