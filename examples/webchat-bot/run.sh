#!/usr/bin/env bash
# Serves the example webchat-bot bundle on 127.0.0.1:8080 with the embedded dev
# store (.greentic/dev-store.json). On first run it seeds a development signing
# secret, so the README's curl works at once. Development only: the dev store is a
# plain local file.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p gtc
gtc=target/release/gtc
export GREENTIC_ENV="${GREENTIC_ENV:-dev}" GREENTIC_TENANT="${GREENTIC_TENANT:-demo}"
if ! "$gtc" op secrets ls "$GREENTIC_TENANT/support" 2>/dev/null | grep -q '/webchat-bot/webhook-secret$'; then
  printf '%s' 'dev-webhook-secret' | "$gtc" op secrets put "$GREENTIC_TENANT/support/webchat-bot/webhook-secret"
fi
exec "$gtc" serve --bundle examples/webchat-bot=support --listen "${GTC_LISTEN:-127.0.0.1:8080}"
