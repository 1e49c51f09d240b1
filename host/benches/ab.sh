#!/usr/bin/env bash
# A/B throughput of gtc configurations, interleaved, for the comparisons of
# BENCHMARKS.md that the bench does not repeat (e.g. the keep-resident sweep).
#
#   host/benches/ab.sh SECONDS REPS CONNECTIONS -- "LABEL|GTC_BINARY|BUNDLE|ARGS" ...
#
# BUNDLE is hello or webchat-bot, with `+reuse` for `[instances] reuse = 10000`
# (idle and age maxima as in the bench). GTC_BINARY `wasmtime` starts the official
# peer instead (`host/benches/install-bench-tools.sh` installs it) with gtc's
# pooling configuration, as the bench's `WASMTIME_AS_GTC`; `+reuse` adds
# `--max-instance-reuse-count 10000 --idle-instance-timeout 60s`; ARGS go to
# `wasmtime serve`.
#
# Each spec starts one server (clean environment, dev store, the release guest),
# warms it up, then every repetition runs `wrk -t1 -cCONNECTIONS` against each
# server in turn. Prints requests/s, p50, p99 and the server's CPU (user + system,
# /proc) per request for every run, and the load average at the end.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
secs=$1 reps=$2 conns=$3
shift 4
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
key=bench-webhook-key
# webchat-bot gets the README's own request ("Talk to the example").
body='{"text":"hello bot"}'
sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$key" -r | cut -d' ' -f1)
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["content-type"] = "application/json"\nwrk.headers["x-greentic-signature"] = "sha256=%s"\n' "'$body'" "$sig" > "$work/post.lua"
labels=() urls=() scripts=()
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
for spec in "$@"; do
  IFS='|' read -r label bin bundle args <<< "$spec"
  reuse=false
  case $bundle in *+reuse) reuse=true bundle=${bundle%+reuse} ;; esac
  component="$root/target/guests/wasm32-wasip2/release/${bundle//-/_}.wasm"
  if [ "$bin" = wasmtime ]; then
    [ "$bundle" = hello ] || { echo "the wasmtime peer serves hello only" >&2; exit 2; }
    port=$(free_port)
    extra=()
    $reuse && extra=(--max-instance-reuse-count 10000 --idle-instance-timeout 60s)
    # shellcheck disable=SC2086
    env -i PATH="$PATH" "$root/target/bench-tools/venv/bin/wasmtime" serve -Scli \
      -Opooling-allocator=y -Opooling-memory-keep-resident=2097152 \
      -Opooling-table-keep-resident=2097152 -Opooling-max-unused-warm-slots=32 \
      -Opooling-pagemap-scan=auto -Wtimeout=5s "${extra[@]}" $args \
      --addr "127.0.0.1:$port" "$component" > /dev/null 2>&1 &
    pids+=($!)
    for _ in $(seq 300); do (exec 3<> "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    labels+=("$label") urls+=("http://127.0.0.1:$port/") scripts+=("")
    wrk -t1 -c"$conns" -d2s "${urls[-1]}" > /dev/null
    continue
  fi
  d=$(mktemp -d "$work/s.XXXX")
  mkdir -p "$d/b"
  cp "$component" "$d/b/c.wasm"
  if [ "$bundle" = webchat-bot ]; then
    printf 'id = "webchat-bot"\ncomponent = "c.wasm"\nroutes = ["/webhook"]\n[[secrets.sealed]]\nname = "webhook-secret"\n' > "$d/b/bundle.toml"
    printf '%s' "$key" | env -i PATH="$PATH" GREENTIC_DEV_STORE="$d/store.json" "$bin" op secrets put local/_/webchat-bot/webhook-secret 2>/dev/null
    path=/webhook script="-s $work/post.lua"
  else
    printf 'id = "%s"\ncomponent = "c.wasm"\nroutes = ["/"]\n' "$bundle" > "$d/b/bundle.toml"
    echo '{"format":"greentic-dev-store","version":1,"secrets":{}}' > "$d/store.json"
    path=/ script=""
  fi
  $reuse && printf '[instances]\nreuse = 10000\nidle_timeout_ms = 60000\nmax_age_s = 300\n' >> "$d/b/bundle.toml"
  # shellcheck disable=SC2086
  env -i PATH="$PATH" RUST_LOG=warn GREENTIC_DEV_STORE="$d/store.json" GREENTIC_SECRETS_CACHE_TTL=300s \
    "$bin" serve --listen 127.0.0.1:0 --bundle "$d/b" $args > "$d/out" 2> "$d/log" &
  pids+=($!)
  for _ in $(seq 100); do grep -q listening "$d/out" 2>/dev/null && break; sleep 0.1; done
  labels+=("$label") urls+=("$(sed -n 's/gtc listening on //p' "$d/out")$path") scripts+=("$script")
  # shellcheck disable=SC2086
  wrk -t1 -c"$conns" -d2s $script "${urls[-1]}" > /dev/null
done
for rep in $(seq "$reps"); do
  for i in "${!labels[@]}"; do
    before=$(cpu_ticks "${pids[$i]}")
    # shellcheck disable=SC2086
    out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency ${scripts[$i]} "${urls[$i]}")
    after=$(cpu_ticks "${pids[$i]}")
    n=$(awk '/requests in/ {print $1}' <<< "$out")
    printf 'rep %d  %-30s %10s req/s  p50 %8s  p99 %8s  %6.2f us CPU/request%s\n' "$rep" "${labels[$i]}" \
      "$(awk '/Requests\/sec/ {print $2}' <<< "$out")" "$(awk '/ 50%/ {print $2}' <<< "$out")" \
      "$(awk '/ 99%/ {print $2}' <<< "$out")" \
      "$(echo "($after - $before) * 10000 / $n" | bc -l)" \
      "$(grep -q Non-2xx <<< "$out" && echo '  ERRORS' || true)"
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
