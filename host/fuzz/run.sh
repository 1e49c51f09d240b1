#!/usr/bin/env bash
# Runs every fuzz target for a bounded time, then replays nothing else: findings
# land in host/fuzz/artifacts/<target>/ and new inputs in host/fuzz/corpus/<target>/
# (minimise with `cargo fuzz cmin <target>` before committing them).
#
#   host/fuzz/run.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, all four)
#
# cargo fuzz needs a nightly compiler for its instrumentation flags: the rustup
# `nightly` toolchain when it is installed, else the pinned stable compiler with
# RUSTC_BOOTSTRAP=1 (the same flags, unlocked). Guests are not needed: the build
# script skips them. Exit status: 0 no finding, 1 a target found a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(secret_name envelope manifest vault_response)
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    toolchain=(+nightly)
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
fi
export GTC_SKIP_GUEST_BUILD=1
status=0
log="$(mktemp)"
for target in "${targets[@]}"; do
    echo "== $target: ${seconds}s"
    if cargo "${toolchain[@]}" fuzz run -s none "$target" -- -max_total_time="$seconds" >"$log" 2>&1; then
        grep -E '^(#[0-9]+[[:space:]]+DONE|Done [0-9]+ runs)' "$log" || tail -n 3 "$log"
    else
        tail -n 30 "$log"
        echo "== $target: FINDING or failure (see fuzz/artifacts/$target/ and the lines above)"
        status=1
    fi
done
rm -f "$log"
exit "$status"
