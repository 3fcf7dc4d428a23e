#!/usr/bin/env bash
# Where Envoy's resident memory goes with our filter loaded: the stack idle on ephemeral ports,
# Envoy's RSS by mapping kind and tcmalloc's own account (BENCHMARKS.md, "The module's size
# and Envoy's memory"). A relative --module path is taken from the repository root.
#   bench/envoy-memory.sh                      one worker, our filter
#   bench/envoy-memory.sh --concurrency 2      one more worker's VM
#   bench/envoy-memory.sh --module <path.wasm> another module in our filter's place (the
#                                              benchmark's no-op filter: what our module costs)
set -euo pipefail
exec "$(dirname "$0")/lib/release-bench.sh" envoy-memory "$@"
