#!/usr/bin/env bash
# Idempotent Vault/OpenBao bootstrap for gtc workers: run it any number of times,
# the result is the same.
#
# It enables (if missing) Kubernetes auth and configures it, a KV-v2 engine, a
# transit engine and its key, and writes — for ONE environment + tenant — the
# read-only policy and the role that binds ServiceAccount gtc-worker in the worker
# namespace to it. The policy grants read on that tenant's KV data path and update
# on transit/decrypt/<key>, nothing else (tokens keep Vault's `default` policy,
# which lets them renew themselves).
#
# Works with either the `vault` or the `bao` CLI (VAULT_CLI=bao to choose).
#
# Required: VAULT_ADDR, VAULT_TOKEN (an operator token), GREENTIC_ENV, GREENTIC_TENANT.
# Optional (defaults):
#   WORKER_NAMESPACE (greentic)        WORKER_SERVICE_ACCOUNT (gtc-worker)
#   VAULT_K8S_MOUNT (kubernetes)       VAULT_K8S_ROLE (gtc-worker-$GREENTIC_ENV-$GREENTIC_TENANT)
#   VAULT_KV_MOUNT (secret)            VAULT_KV_PREFIX (greentic)
#   VAULT_TRANSIT_MOUNT (transit)      VAULT_TRANSIT_KEY (greentic)
#   K8S_HOST (https://kubernetes.default.svc)   the API server Vault calls for TokenReview
#   K8S_CA_CERT_FILE                   its CA (PEM); in a pod, the mounted ca.crt
#   K8S_DISABLE_LOCAL_CA_JWT (false)   true when Vault does not run inside the cluster
#   TOKEN_AUDIENCE (vault)             the audience of the projected token
#   TOKEN_TTL (20m)  TOKEN_MAX_TTL (1h)
set -euo pipefail

need() { [ -n "${!1:-}" ] || { echo "vault-bootstrap: $1 is required" >&2; exit 2; }; }
need VAULT_ADDR; need VAULT_TOKEN; need GREENTIC_ENV; need GREENTIC_TENANT

cli="${VAULT_CLI:-}"
if [ -z "$cli" ]; then
  if command -v vault >/dev/null 2>&1; then cli=vault
  elif command -v bao >/dev/null 2>&1; then cli=bao
  else echo "vault-bootstrap: neither the vault nor the bao CLI is on PATH" >&2; exit 2; fi
fi

ns="${WORKER_NAMESPACE:-greentic}"
sa="${WORKER_SERVICE_ACCOUNT:-gtc-worker}"
k8s_mount="${VAULT_K8S_MOUNT:-kubernetes}"
role="${VAULT_K8S_ROLE:-gtc-worker-$GREENTIC_ENV-$GREENTIC_TENANT}"
kv="${VAULT_KV_MOUNT:-secret}"
prefix="${VAULT_KV_PREFIX:-greentic}"
transit="${VAULT_TRANSIT_MOUNT:-transit}"
key="${VAULT_TRANSIT_KEY:-greentic}"
k8s_host="${K8S_HOST:-https://kubernetes.default.svc}"
audience="${TOKEN_AUDIENCE:-vault}"
policy="gtc-read-$GREENTIC_ENV-$GREENTIC_TENANT"
ca_file="${K8S_CA_CERT_FILE:-}"
if [ -z "$ca_file" ] && [ -f /var/run/secrets/kubernetes.io/serviceaccount/ca.crt ]; then
  ca_file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt
fi

say() { echo "vault-bootstrap: $*"; }

# Listings are captured before grepping: `grep -q` exiting early would make the
# CLI die of SIGPIPE, and pipefail would turn "found" into "missing".
auth_mounts="$("$cli" auth list -format=json)"
secret_mounts="$("$cli" secrets list -format=json)"
has() { grep -q "\"$2/\"" <<<"$1"; }

# Kubernetes auth method.
if has "$auth_mounts" "$k8s_mount"; then
  say "auth/$k8s_mount already enabled"
else
  "$cli" auth enable -path="$k8s_mount" kubernetes >/dev/null
  say "enabled auth/$k8s_mount"
fi
config_args=("kubernetes_host=$k8s_host")
[ -n "$ca_file" ] && config_args+=("kubernetes_ca_cert=@$ca_file")
[ "${K8S_DISABLE_LOCAL_CA_JWT:-false}" = "true" ] && config_args+=("disable_local_ca_jwt=true")
"$cli" write "auth/$k8s_mount/config" "${config_args[@]}" >/dev/null
say "configured auth/$k8s_mount (kubernetes_host=$k8s_host)"

# KV-v2.
if has "$secret_mounts" "$kv"; then
  kv_config="$("$cli" read -format=json "sys/mounts/$kv")"
  if ! grep -q '"version": "2"' <<<"$kv_config"; then
    echo "vault-bootstrap: $kv/ is mounted but is not KV version 2; refusing to change it" >&2
    exit 1
  fi
  say "$kv/ (KV-v2) already enabled"
else
  "$cli" secrets enable -path="$kv" -version=2 kv >/dev/null
  say "enabled $kv/ (KV-v2)"
fi

# Transit and its key.
if has "$secret_mounts" "$transit"; then
  say "$transit/ already enabled"
else
  "$cli" secrets enable -path="$transit" transit >/dev/null
  say "enabled $transit/"
fi
if "$cli" read "$transit/keys/$key" >/dev/null 2>&1; then
  say "transit key $key already exists"
else
  "$cli" write -f "$transit/keys/$key" type=aes256-gcm96 >/dev/null
  say "created transit key $key"
fi

# The read-only policy for this environment + tenant.
"$cli" policy write "$policy" - >/dev/null <<HCL
# gtc worker for env "$GREENTIC_ENV", tenant "$GREENTIC_TENANT": read its secrets, unwrap data keys.
path "$kv/data/$prefix/$GREENTIC_ENV/$GREENTIC_TENANT/*" {
  capabilities = ["read"]
}
path "$transit/decrypt/$key" {
  capabilities = ["update"]
}
HCL
say "wrote policy $policy"

# The role: only ServiceAccount $sa in namespace $ns.
"$cli" write "auth/$k8s_mount/role/$role" \
  bound_service_account_names="$sa" \
  bound_service_account_namespaces="$ns" \
  audience="$audience" \
  token_policies="$policy" \
  token_ttl="${TOKEN_TTL:-20m}" \
  token_max_ttl="${TOKEN_MAX_TTL:-1h}" >/dev/null
say "wrote role $role (ServiceAccount $ns/$sa, policy $policy)"
