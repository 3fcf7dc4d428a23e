#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time and prints one line per target:
# executions, and whether anything was found. `make test` runs 10 s each; longer runs:
#   scripts/fuzz.sh 600            # ten minutes per target
#   scripts/fuzz.sh 60 token       # one target
# A crash stops with a non-zero exit; the input is kept under fuzz/artifacts/<target>/.
# Built with `--sanitizer none`: the machine has only the stable toolchain, and the targets are
# safe Rust (no unsafe), where the address sanitizer would add little.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-10}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token policy filter_config control path)
# Next to the workspace's build cache when CI points CARGO_TARGET_DIR outside the clone.
opts=(--sanitizer none)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
  opts+=(--target-dir "$CARGO_TARGET_DIR/fuzz")
  unset CARGO_TARGET_DIR
fi
cargo fuzz build "${opts[@]}" >/dev/null 2>&1 || { cargo fuzz build "${opts[@]}"; exit 1; }
status=0
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  log="$(mktemp)"
  if cargo fuzz run "$t" "${opts[@]}" "corpus/$t" -- -max_total_time="$secs" >"$log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs in [0-9]+ second' "$log" | tail -n 1)
    printf 'fuzz %-14s %s, nothing found\n' "$t" "${runs:-done}"
  else
    status=1
    printf 'fuzz %-14s FOUND A CRASH:\n' "$t"
    tail -n 30 "$log"
  fi
  rm -f "$log"
done
exit "$status"
