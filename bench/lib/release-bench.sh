#!/usr/bin/env bash
# Builds what a release benchmark of the whole stack needs (the tools, the filter, the release
# sidecar and the named benchmark binary of tests/), then runs that binary with the remaining
# arguments. Used by bench/flood.sh and bench/revocation-propagation.sh.
#   bench/lib/release-bench.sh <binary> [arguments...]
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN="$1"
shift
./scripts/setup.sh
cargo build -q -p authz-filter --target wasm32-wasip1 --profile wasm-release
cargo build -q --release -p authz-sidecar
cargo build -q --release -p authz-e2e --bin "$BIN"
exec "${CARGO_TARGET_DIR:-target}/release/$BIN" "$@"
