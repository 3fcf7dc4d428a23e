#!/usr/bin/env bash
# Runs every test of the workspace and ends with one summary line over all test binaries
# ("tests: N passed, M failed"), since cargo's own last line is the doc-test run of the last
# crate (which has none).
set -uo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo test --workspace --no-fail-fast "$@" 2>&1 | tee "$out"
status=${PIPESTATUS[0]}
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$out"
exit "$status"
