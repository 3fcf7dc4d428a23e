#!/usr/bin/env bash
# Signature verification inside Envoy's V8, pure Rust vs Envoy's verify_signature:
#   bench/wasm-verify.sh [iterations]     (default 300)
# Prints one line per algorithm with the mean microseconds per verification.
set -euo pipefail
cd "$(dirname "$0")/.."
ITER="${1:-300}"
./scripts/setup.sh
cargo build -q -p authz-bench-wasm-verify --target wasm32-wasip1 --profile wasm-release
TARGET="${CARGO_TARGET_DIR:-target}"
WASM="$(cd "$TARGET" && pwd)/wasm32-wasip1/wasm-release/authz_bench_wasm_verify.wasm"
ENVOY=.tools/envoy/envoy/_bin/envoy
work="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
sed -e "s|WASM_PATH|$WASM|" -e "s|ITERATIONS|$ITER|" bench/wasm-verify/envoy.yaml > "$work/envoy.yaml"
"$ENVOY" -c "$work/envoy.yaml" --disable-hot-restart --concurrency 1 --log-level warn > "$work/envoy.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q "WASM_VERIFY done" "$work/envoy.log" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/envoy.log"; exit 1; }
  sleep 0.2
done
grep -o "WASM_VERIFY alg=.*" "$work/envoy.log" || { cat "$work/envoy.log"; exit 1; }
