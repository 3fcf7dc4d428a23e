#!/usr/bin/env bash
# Revocation propagation: publish -> first 401 on every Envoy worker, p50/p99 over many
# revocations. Builds what it needs, starts its own stack on ephemeral ports, stops it after.
#   bench/revocation-propagation.sh [--revocations N] [--connections K] [--concurrency W]
set -euo pipefail
cd "$(dirname "$0")/.."
make -s build >/dev/null
cargo run -q -p authz-e2e --bin revocation-bench -- "$@"
