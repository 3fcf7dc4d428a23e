#!/usr/bin/env bash
# The soak run: the shipped gateway (our filter with the audit trail, the sidecar, Redis) at half
# of its measured saturation, tokens mixed with API keys, for 10 minutes after a 1-minute
# warm-up. Fails unless no request fails and the resident memory of Envoy and of the sidecar
# stays within 5% of its post-warm-up size at every reading (every 30 s).
# Writes bench/results/soak.{json,md}.
#   bench/soak.sh                        10 minutes (about 12 with set-up and warm-up)
#   bench/soak.sh --soak-minutes 60      longer
#   bench/soak.sh --help                 every option (tolerance, sample interval, mix, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -q -p authz-filter --target wasm32-wasip1 --profile wasm-release
cargo build -q --release -p authz-sidecar -p authz-bench
# The harness checks for the no-op module of the comparison at start-up.
cargo build -q -p authz-bench-noop-filter --target wasm32-wasip1 --profile wasm-release
TARGET="${CARGO_TARGET_DIR:-target}"
case " $* " in *" --soak-minutes "*) exec "$TARGET/release/authz-bench" "$@" ;; esac
exec "$TARGET/release/authz-bench" --soak-minutes 10 "$@"
