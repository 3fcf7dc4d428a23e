#!/usr/bin/env bash
# Revocation propagation, hop by hop: PUBLISH -> sidecar -> applied in every Envoy worker's VM,
# over many facts published one at a time (release builds; nothing polls while a fact travels).
# Starts its own stack on ephemeral ports and stops it after.
#   bench/revocation-propagation.sh [--revocations N] [--held N] [--connections K] [--concurrency W]
set -euo pipefail
exec "$(dirname "$0")/lib/release-bench.sh" revocation-bench "$@"
