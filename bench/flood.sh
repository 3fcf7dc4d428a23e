#!/usr/bin/env bash
# Anonymous garbage against legitimate traffic: legitimate JWT and API-key clients alone, then
# next to a flood of random API keys and random-kid JWTs from another client address, with the
# shipped bounds and with the sidecar's bounds lifted. Writes bench/results/flood.md.
#   bench/flood.sh                  10 s per phase
#   bench/flood.sh --duration 30    longer phases
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -q -p authz-filter --target wasm32-wasip1 --profile wasm-release
cargo build -q --release -p authz-sidecar
cargo build -q --release -p authz-e2e --bin flood-bench
TARGET="${CARGO_TARGET_DIR:-target}"
exec "$TARGET/release/flood-bench" "$@"
