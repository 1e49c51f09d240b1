#!/usr/bin/env bash
# Idempotent Vault/OpenBao bootstrap for gtc workers: run it any number of times,
# the result is the same.
#
# It enables (if missing) Kubernetes auth and configures it, a KV-v2 engine, a
# transit engine and the tenant's own key, and writes — for ONE environment +
# tenant — the read-only policy and the role that binds the scope's worker identity
# to it. What Vault itself then enforces:
#
# - One identity per scope. The role binds ServiceAccount gtc-worker-ENV-TENANT (the
#   name `gtc deploy render` gives the worker) in WORKER_NAMESPACE, so several
#   tenants and environments can share one namespace. Before writing anything the
#   script reads every role on the auth mount and refuses (exit 2, with the fix)
#   when another role already binds the same (namespace, ServiceAccount) — that
#   worker could otherwise log in to both roles — or when a policy or role of the
#   same name belongs to another scope.
# - Team isolation (TEAMS="support sales"): one role + policy per team instead,
#   bound to ServiceAccount gtc-worker-ENV-TENANT-TEAM, reading only that team's
#   secrets and the tenant-wide ones (team `_`); the tenant-wide role is removed.
# - Least privilege: tokens carry no `default` policy (token_no_default_policy); the
#   policy grants read on the scope's KV data paths, update on transit/decrypt of
#   the tenant's key, and update on auth/token/renew-self. Nothing else.
# - A transit key per tenant, greentic-ENV-TENANT. LEGACY_TRANSIT_KEY=greentic also
#   grants decrypt on the key all tenants shared before, while `gtc op secrets
#   rewrap` migrates old envelopes; run again without it afterwards.
#
# Works with either the `vault` or the `bao` CLI (VAULT_CLI=bao to choose).
#
# Required: VAULT_ADDR, VAULT_TOKEN (an operator token), GREENTIC_ENV, GREENTIC_TENANT.
# Optional (defaults):
#   WORKER_NAMESPACE (greentic)
#   WORKER_SERVICE_ACCOUNT (gtc-worker-$GREENTIC_ENV-$GREENTIC_TENANT); `gtc-worker`
#                                      still works for one tenant alone in a namespace
#   VAULT_K8S_ROLE (gtc-worker-$GREENTIC_ENV-$GREENTIC_TENANT)
#   TEAMS (none)                       isolate these teams: a role + policy per team
#   VAULT_K8S_MOUNT (kubernetes)
#   VAULT_KV_MOUNT (secret)            VAULT_KV_PREFIX (greentic)
#   VAULT_TRANSIT_MOUNT (transit)      VAULT_TRANSIT_KEY (greentic-$GREENTIC_ENV-$GREENTIC_TENANT)
#   LEGACY_TRANSIT_KEY (none)          also allow decrypt with this key (migration)
#   K8S_HOST (https://kubernetes.default.svc)   the API server Vault calls for TokenReview
#   K8S_CA_CERT_FILE                   its CA (PEM); in a pod, the mounted ca.crt
#   K8S_DISABLE_LOCAL_CA_JWT (false)   true when Vault does not run inside the cluster;
#                                      it then needs one of these two (neither: exit 2):
#   TOKEN_REVIEWER_JWT_FILE            (the default way) a token of the reviewer
#     or TOKEN_REVIEWER_JWT            ServiceAccount `gtc deploy render --vault-mode
#                                      external` emits, bound to system:auth-delegator:
#                                      kubectl create token gtc-vault-reviewer-ENV-TENANT
#                                      -n NS --duration=8760h (Vault's token_reviewer_jwt)
#   USE_CLIENT_JWT_AS_REVIEWER (false) true: Vault reviews each worker token with that
#                                      token itself; the API server must accept it (an
#                                      audience of its own besides `vault`) and the
#                                      worker's ServiceAccount needs system:auth-delegator
#   TOKEN_AUDIENCE (vault)             the audience of the projected token
#   TOKEN_TTL (20m)  TOKEN_MAX_TTL (1h)
#
# Exit status: 0 done, 1 Vault refused or failed, 2 bad configuration or an
# identity that would be shared between scopes.
set -Eeuo pipefail

fail2() { echo "vault-bootstrap: $*" >&2; exit 2; }
# Any other failing command is a Vault call that Vault refused (bad or expired
# VAULT_TOKEN, a policy that does not allow it, sealed) or that could not reach
# it: exit 1, as the header promises — not the CLI's own status (the vault and
# bao CLIs exit 2 for an API error, which would read as "bad configuration").
trap 'echo "vault-bootstrap: a call to Vault failed (line $LINENO; its message is above): Vault refused it or could not be reached" >&2; exit 1' ERR
need() { [ -n "${!1:-}" ] || fail2 "$1 is required"; }
need VAULT_ADDR; need VAULT_TOKEN; need GREENTIC_ENV; need GREENTIC_TENANT

# Scope segments as gtc accepts them; Kubernetes and Vault names as they accept them.
segment_ok() { [[ "$1" =~ ^[a-z0-9][a-z0-9._-]*$ ]] && [ "${#1}" -le 64 ]; }
k8s_name_ok() { [[ "$1" =~ ^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$ ]] && [ "${#1}" -le 253 ]; }
vault_name_ok() { [[ "$1" =~ ^[A-Za-z0-9._-]+$ ]] && [ "$1" != . ] && [ "$1" != .. ]; }

env_name="$GREENTIC_ENV"
tenant="$GREENTIC_TENANT"
segment_ok "$env_name" || fail2 "GREENTIC_ENV=$env_name is not a valid segment ([a-z0-9][a-z0-9._-]*)"
segment_ok "$tenant" || fail2 "GREENTIC_TENANT=$tenant is not a valid segment ([a-z0-9][a-z0-9._-]*)"
scope="$env_name-$tenant"

cli="${VAULT_CLI:-}"
if [ -z "$cli" ]; then
  if command -v vault >/dev/null 2>&1; then cli=vault
  elif command -v bao >/dev/null 2>&1; then cli=bao
  else fail2 "neither the vault nor the bao CLI is on PATH"; fi
fi

ns="${WORKER_NAMESPACE:-greentic}"
k8s_mount="${VAULT_K8S_MOUNT:-kubernetes}"
kv="${VAULT_KV_MOUNT:-secret}"
prefix="${VAULT_KV_PREFIX:-greentic}"
transit="${VAULT_TRANSIT_MOUNT:-transit}"
key="${VAULT_TRANSIT_KEY:-greentic-$scope}"
legacy_key="${LEGACY_TRANSIT_KEY:-}"
k8s_host="${K8S_HOST:-https://kubernetes.default.svc}"
audience="${TOKEN_AUDIENCE:-vault}"
ca_file="${K8S_CA_CERT_FILE:-}"
if [ -z "$ca_file" ] && [ -f /var/run/secrets/kubernetes.io/serviceaccount/ca.crt ]; then
  ca_file=/var/run/secrets/kubernetes.io/serviceaccount/ca.crt
fi
k8s_name_ok "$ns" || fail2 "WORKER_NAMESPACE=$ns is not a Kubernetes namespace name"

# Who Vault's TokenReview calls authenticate as. Inside the cluster Vault uses its
# own ServiceAccount token. Outside (K8S_DISABLE_LOCAL_CA_JWT=true) it sends the
# reviewer JWT, or with none the worker's own token, whose audience (`vault`) the API
# server refuses — every login would then fail. So one of the two is required.
external="${K8S_DISABLE_LOCAL_CA_JWT:-false}"
client_reviewer="${USE_CLIENT_JWT_AS_REVIEWER:-false}"
reviewer_jwt_file=""
if [ -n "${TOKEN_REVIEWER_JWT_FILE:-}" ]; then
  { [ -f "$TOKEN_REVIEWER_JWT_FILE" ] && [ -r "$TOKEN_REVIEWER_JWT_FILE" ] && [ -s "$TOKEN_REVIEWER_JWT_FILE" ]; } ||
    fail2 "TOKEN_REVIEWER_JWT_FILE=$TOKEN_REVIEWER_JWT_FILE is not a readable, non-empty file"
  reviewer_jwt_file="$TOKEN_REVIEWER_JWT_FILE"
elif [ -n "${TOKEN_REVIEWER_JWT:-}" ]; then
  reviewer_jwt_file="$(mktemp)"
  trap 'rm -f "$reviewer_jwt_file"' EXIT
  printf '%s' "$TOKEN_REVIEWER_JWT" >"$reviewer_jwt_file"
fi
[ -n "$reviewer_jwt_file" ] && [ "$client_reviewer" = true ] &&
  fail2 "give a reviewer JWT (TOKEN_REVIEWER_JWT_FILE / TOKEN_REVIEWER_JWT) or USE_CLIENT_JWT_AS_REVIEWER=true, not both"
if [ "$external" = true ] && [ -z "$reviewer_jwt_file" ] && [ "$client_reviewer" != true ]; then
  fail2 "K8S_DISABLE_LOCAL_CA_JWT=true (Vault outside the cluster) needs a reviewer identity, or every worker login fails at TokenReview: set TOKEN_REVIEWER_JWT_FILE to a token of the reviewer ServiceAccount that gtc deploy render --vault-mode external emits (kubectl create token gtc-vault-reviewer-$scope -n $ns --duration=8760h), or USE_CLIENT_JWT_AS_REVIEWER=true if the workers' tokens carry an audience the API server accepts and their ServiceAccounts are bound to system:auth-delegator"
fi
for name in "$key" ${legacy_key:+"$legacy_key"}; do
  vault_name_ok "$name" || fail2 "transit key name $name: letters, digits, '.', '_', '-' only"
done

# The roles to write: name, ServiceAccount, policy, team (`*`: the whole tenant),
# and the KV paths its policy reads.
teams_var="${TEAMS:-}"
read -r -a teams <<<"${teams_var//,/ }"
roles=(); sas=(); policies=(); role_teams=(); reads=()
if [ "${#teams[@]}" -eq 0 ]; then
  roles+=("${VAULT_K8S_ROLE:-gtc-worker-$scope}")
  sas+=("${WORKER_SERVICE_ACCOUNT:-gtc-worker-$scope}")
  policies+=("gtc-read-$scope")
  role_teams+=("*")
  reads+=("$kv/data/$prefix/$env_name/$tenant/*")
else
  [ -z "${WORKER_SERVICE_ACCOUNT:-}${VAULT_K8S_ROLE:-}" ] ||
    fail2 "with TEAMS, every team's role and ServiceAccount is gtc-worker-$scope-TEAM; unset WORKER_SERVICE_ACCOUNT and VAULT_K8S_ROLE"
  for team in "${teams[@]}"; do
    { segment_ok "$team" && [ "$team" != _ ]; } || fail2 "TEAMS: $team is not a team name"
    roles+=("gtc-worker-$scope-$team")
    sas+=("gtc-worker-$scope-$team")
    policies+=("gtc-read-$scope-$team")
    role_teams+=("$team")
    reads+=("$kv/data/$prefix/$env_name/$tenant/$team/* $kv/data/$prefix/$env_name/$tenant/_/*")
  done
fi
for i in "${!roles[@]}"; do
  k8s_name_ok "${sas[$i]}" || fail2 "ServiceAccount ${sas[$i]} is not a Kubernetes name"
  vault_name_ok "${roles[$i]}" || fail2 "role name ${roles[$i]}: letters, digits, '.', '_', '-' only"
done

say() { echo "vault-bootstrap: $*"; }

# Listings are captured before grepping: `grep -q` exiting early would make the
# CLI die of SIGPIPE, and pipefail would turn "found" into "missing".
auth_mounts="$("$cli" auth list -format=json)"
secret_mounts="$("$cli" secrets list -format=json)"
has() { grep -q "\"$2/\"" <<<"$1"; }

# The elements of a list field of the CLI's (indented) JSON, one per line.
json_list() {
  awk -v key="\"$2\": " '
    inside { if ($0 ~ /^[[:space:]]*\]/) exit
             gsub(/^[[:space:]]*"|",?[[:space:]]*$/, ""); print; next }
    index($0, key) == 0 { next }
    /\[\]/ { exit }
    /\[[[:space:]]*$/ { inside = 1 }' <<<"$1"
}
json_string() { sed -n "s/^[[:space:]]*\"$2\": \"\\(.*\\)\",\\{0,1\\}$/\\1/p" <<<"$1" | head -n 1; }
# Whether name $2 is bound by a list $1 of names or glob patterns (`*`, `gtc-*`),
# which Vault's Kubernetes auth accepts for both ServiceAccounts and namespaces.
in_list() {
  local pattern
  while IFS= read -r pattern; do
    # shellcheck disable=SC2053  # unquoted on purpose: a glob pattern
    [ -n "$pattern" ] && [[ "$2" == $pattern ]] && return 0
  done <<<"$1"
  return 1
}
# The scope a policy written by this script belongs to (its first line says).
scope_line() { printf '# gtc-scope: env=%s tenant=%s team=%s' "$env_name" "$tenant" "$1"; }

# ---- Checks first: nothing is written when an identity would be shared. ----
existing_roles=""
if has "$auth_mounts" "$k8s_mount"; then
  status=0
  listing="$("$cli" list -format=json "auth/$k8s_mount/role" 2>/dev/null)" || status=$?
  case "$status" in
    0) existing_roles="$(grep -o '"[^"]*"' <<<"$listing" | tr -d '"')" ;;
    2) existing_roles="" ;;  # no roles yet
    *) echo "vault-bootstrap: cannot list auth/$k8s_mount/role (status $status)" >&2; exit 1 ;;
  esac
fi
tenant_role_is_ours=false
for other in $existing_roles; do
  role_json="$("$cli" read -format=json "auth/$k8s_mount/role/$other")"
  if [ "$other" = "gtc-worker-$scope" ] &&
    grep -qxF "gtc-read-$scope" <<<"$(json_list "$role_json" token_policies)"; then
    tenant_role_is_ours=true
  fi
  names="$(json_list "$role_json" bound_service_account_names)"
  namespaces="$(json_list "$role_json" bound_service_account_namespaces)"
  selector="$(json_string "$role_json" bound_service_account_namespace_selector)"
  for i in "${!roles[@]}"; do
    if [ "$other" = "${roles[$i]}" ]; then
      # Our own role name: it must be this scope's (it uses this scope's policy).
      if ! grep -qxF "${policies[$i]}" <<<"$(json_list "$role_json" token_policies)"; then
        fail2 "role $other already exists and does not use policy ${policies[$i]}: it is not this scope's role. Choose another VAULT_K8S_ROLE, or delete it if it is stale: $cli delete auth/$k8s_mount/role/$other"
      fi
      continue
    fi
    in_list "$names" "${sas[$i]}" || continue
    if in_list "$namespaces" "$ns" || [ -n "$selector" ]; then
      fail2 "ServiceAccount ${sas[$i]} in namespace $ns is already bound by role $other (ServiceAccounts: $(echo $names), namespaces: $(echo $namespaces)${selector:+, namespace selector: $selector}). A worker identity must belong to one scope only, or its pods could log in to both roles and read both scopes' secrets. Fix: give this scope its own ServiceAccount (unset WORKER_SERVICE_ACCOUNT: the default is gtc-worker-$scope, which \`gtc deploy render\` uses) or its own namespace (WORKER_NAMESPACE); or, if role $other is stale, delete it: $cli delete auth/$k8s_mount/role/$other"
    fi
  done
done
for i in "${!policies[@]}"; do
  if current="$("$cli" policy read "${policies[$i]}" 2>/dev/null)"; then
    marker="$(grep -m1 '^# gtc-scope:' <<<"$current" || true)"
    if [ -n "$marker" ] && [ "$marker" != "$(scope_line "${role_teams[$i]}")" ]; then
      fail2 "policy ${policies[$i]} belongs to another scope (${marker#\# gtc-scope: }): env, tenant and team names joined by '-' collide. Rename one of the scopes."
    fi
  fi
done

# ---- Engines. ----
if has "$auth_mounts" "$k8s_mount"; then
  say "auth/$k8s_mount already enabled"
else
  "$cli" auth enable -path="$k8s_mount" kubernetes >/dev/null
  say "enabled auth/$k8s_mount"
fi
config_args=("kubernetes_host=$k8s_host")
[ -n "$ca_file" ] && config_args+=("kubernetes_ca_cert=@$ca_file")
[ "$external" = "true" ] && config_args+=("disable_local_ca_jwt=true")
[ -n "$reviewer_jwt_file" ] && config_args+=("token_reviewer_jwt=@$reviewer_jwt_file")
"$cli" write "auth/$k8s_mount/config" "${config_args[@]}" >/dev/null
say "configured auth/$k8s_mount (kubernetes_host=$k8s_host)"

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
  say "created transit key $key (this tenant's only)"
fi
if [ -z "$legacy_key" ] && [ "$key" != greentic ] && "$cli" read "$transit/keys/greentic" >/dev/null 2>&1; then
  say "note: the shared transit key 'greentic' exists. If $scope has secrets written before per-tenant keys, run again with LEGACY_TRANSIT_KEY=greentic, then \`gtc op secrets rewrap $tenant --env $env_name\`, then again without it"
fi

# ---- Policies and roles. ----
for i in "${!roles[@]}"; do
  {
    scope_line "${role_teams[$i]}"; echo
    if [ "${role_teams[$i]}" = "*" ]; then who="env $env_name, tenant $tenant"
    else who="env $env_name, tenant $tenant, team ${role_teams[$i]}"; fi
    echo "# gtc worker for $who: read its secrets, unwrap its data keys, renew its own token."
    for path in ${reads[$i]}; do
      printf 'path "%s" {\n  capabilities = ["read"]\n}\n' "$path"
    done
    printf 'path "%s/decrypt/%s" {\n  capabilities = ["update"]\n}\n' "$transit" "$key"
    if [ -n "$legacy_key" ] && [ "$legacy_key" != "$key" ]; then
      echo "# Migration only: envelopes wrapped by the shared key (LEGACY_TRANSIT_KEY)."
      printf 'path "%s/decrypt/%s" {\n  capabilities = ["update"]\n}\n' "$transit" "$legacy_key"
    fi
    printf 'path "auth/token/renew-self" {\n  capabilities = ["update"]\n}\n'
  } | "$cli" policy write "${policies[$i]}" - >/dev/null
  say "wrote policy ${policies[$i]}"

  "$cli" write "auth/$k8s_mount/role/${roles[$i]}" \
    bound_service_account_names="${sas[$i]}" \
    bound_service_account_namespaces="$ns" \
    audience="$audience" \
    token_policies="${policies[$i]}" \
    token_no_default_policy=true \
    token_ttl="${TOKEN_TTL:-20m}" \
    token_max_ttl="${TOKEN_MAX_TTL:-1h}" >/dev/null
  say "wrote role ${roles[$i]} (ServiceAccount $ns/${sas[$i]}, policy ${policies[$i]}, no default policy)"
done

# Isolated teams replace the tenant-wide role: it would read every team's secrets.
if [ "${#teams[@]}" -gt 0 ] && [ "$tenant_role_is_ours" = true ]; then
  "$cli" delete "auth/$k8s_mount/role/gtc-worker-$scope" >/dev/null
  say "deleted the tenant-wide role gtc-worker-$scope (teams are isolated now)"
fi
