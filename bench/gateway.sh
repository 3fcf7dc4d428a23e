#!/usr/bin/env bash
# The side-by-side gateway benchmark: bare Envoy, Envoy's jwt_authn, a no-op wasm filter, our
# filter (hit, miss, callout) and native ext_authz to our sidecar, one after the other in one
# run, under the same listener, route and load. Writes bench/results/gateway.{json,md,png}.
#   bench/gateway.sh                 the seven variants (about 3 minutes)
#   bench/gateway.sh --curves        plus the scaling curves and memory (about 15 minutes more)
#   bench/gateway.sh --help          every option (duration, connections, pool size, ...)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build -q -p authz-filter -p authz-bench-noop-filter --target wasm32-wasip1 --profile wasm-release
cargo build -q --release -p authz-sidecar -p authz-bench
TARGET="${CARGO_TARGET_DIR:-target}"
"$TARGET/release/authz-bench" "$@"
case " $* " in *" --help "*|*" -h "*) exit 0 ;; esac
# The chart needs matplotlib: a venv of its own under .tools, made once.
VENV=.tools/bench-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import matplotlib' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'matplotlib>=3.8,<4'
fi
"$VENV/bin/python" bench/chart.py bench/results/gateway.json bench/results/gateway.png
echo "bench: wrote bench/results/gateway.md, gateway.json and gateway.png"
