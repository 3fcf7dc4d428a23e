#!/usr/bin/env bash
# Anonymous garbage against legitimate traffic: legitimate JWT and API-key clients alone, then
# next to a flood of random API keys and random-kid JWTs from another client address, with the
# shipped bounds and with the sidecar's bounds lifted. Writes bench/results/flood.md.
#   bench/flood.sh                  10 s per phase
#   bench/flood.sh --duration 30    longer phases
set -euo pipefail
exec "$(dirname "$0")/lib/release-bench.sh" flood-bench "$@"
