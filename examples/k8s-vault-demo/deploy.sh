#!/usr/bin/env bash
# The whole story on a kind cluster: build the worker image, load it, run a dev
# Vault in the cluster, bootstrap it, seed the secret, deploy gtc (vault backend:
# no Secret object), send a signed webhook through the router, show that
# `kubectl get secrets` reveals nothing sensitive, and show Vault's audit chain.
#
# Needs: docker (with an engine), kind, kubectl, curl, openssl, a Rust toolchain.
# CLUSTER (gtc-demo), GREENTIC_ENV (dev), GREENTIC_TENANT (demo), NAMESPACE (greentic)
# may be set; several tenants can be deployed into one namespace.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
cluster="${CLUSTER:-gtc-demo}"
export GREENTIC_ENV="${GREENTIC_ENV:-dev}" GREENTIC_TENANT="${GREENTIC_TENANT:-demo}"
namespace="${NAMESPACE:-greentic}"
scope="$GREENTIC_ENV-$GREENTIC_TENANT"
for tool in docker kind kubectl curl openssl cargo; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is required" >&2; exit 2; }
done
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
step() { printf '\n== %s\n' "$*"; }

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
kubectl -n vault port-forward svc/vault 18200:8200 >/dev/null 2>&1 &
pids+=($!)
export VAULT_ADDR=http://127.0.0.1:18200
for _ in $(seq 50); do curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1 && break; sleep 0.2; done

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
  --bundle webchat-bot=support --replicas 1 | kubectl apply -f -
kubectl -n "$namespace" rollout status "deploy/gtc-worker-$scope" --timeout=180s
kubectl -n "$namespace" rollout status "deploy/gtc-router-$scope" --timeout=180s

step "sending a signed webhook through the router"
kubectl -n "$namespace" port-forward "svc/gtc-router-$scope" 18080:8080 >/dev/null 2>&1 &
pids+=($!)
sleep 2
body='{"text":"hello from kind"}'
sig="$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret" | sed 's/^.*= //')"
curl -sS -i -H "x-greentic-signature: sha256=$sig" -d "$body" http://127.0.0.1:18080/webhook

step "kubectl get secrets -n $namespace (nothing sensitive: no Secret was rendered)"
kubectl -n "$namespace" get secrets

step "Vault's audit chain"
kubectl -n vault logs deploy/vault | grep -o '"path":"\(auth/kubernetes/login\|secret/data/greentic/[^"]*\|transit/decrypt/[^"]*\)"' | uniq
