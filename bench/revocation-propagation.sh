#!/usr/bin/env bash
# Revocation propagation, hop by hop: PUBLISH -> sidecar -> applied in every Envoy worker's VM,
# over many facts published one at a time (release builds; nothing polls while a fact travels).
# Starts its own stack on ephemeral ports and stops it after.
#   bench/revocation-propagation.sh [--revocations N] [--held N] [--connections K] [--concurrency W]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -q -p authz-filter --target wasm32-wasip1 --profile wasm-release
cargo build -q --release -p authz-sidecar
cargo build -q --release -p authz-e2e --bin revocation-bench
TARGET="${CARGO_TARGET_DIR:-target}"
exec "$TARGET/release/revocation-bench" "$@"
