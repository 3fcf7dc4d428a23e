# The sidecar image: the authz-sidecar binary, plus the wasm filter and its SHA-256 for the
# gateway pod's init container (k8s/40-gateway.yaml). Built by `scripts/images.sh` (Docker when
# there is an engine, else buildah), from the repository root:
#   docker build -f docker/sidecar.Dockerfile -t ghcr.io/omnibioai/authz-sidecar:0.1.0 .
# Build arguments, so one file serves both worlds:
#   BUILD_BASE    the Rust toolchain image of the `build` stage (public default)
#   RUNTIME_BASE  the runtime base (public Debian slim; a local mmdebstrap base here)
#   ARTIFACTS     `build` compiles in the image; `prebuilt` takes dist/ from the context
#                 (binaries built outside the image, where the image build has no toolchain)
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod spec has liveness and readiness probes (k8s/40-gateway.yaml)
#checkov:skip=CKV_DOCKER_7:the bases are build arguments whose defaults carry version tags (see the ARG lines); `FROM ${ARTIFACTS}` names a stage of this file, not an image
ARG BUILD_BASE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_BASE=docker.io/library/debian:bookworm-slim
ARG ARTIFACTS=build

FROM ${BUILD_BASE} AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip1 \
 && cargo build --locked --release -p authz-sidecar \
 && cargo build --locked -p authz-filter --target wasm32-wasip1 --profile wasm-release \
 && mkdir -p /out \
 && cp target/release/authz-sidecar /out/ \
 && cp target/wasm32-wasip1/wasm-release/authz_filter.wasm /out/ \
 && cd /out && sha256sum authz_filter.wasm > authz_filter.wasm.sha256

FROM ${RUNTIME_BASE} AS prebuilt
COPY dist/authz-sidecar dist/authz_filter.wasm /out/
RUN cd /out && sha256sum authz_filter.wasm > authz_filter.wasm.sha256

FROM ${ARTIFACTS} AS artifacts

# Debian: the init container needs sh, sha256sum and cp; the sidecar needs CA roots to reach
# an https auth service.
FROM ${RUNTIME_BASE}
RUN if ! [ -e /etc/ssl/certs/ca-certificates.crt ]; then \
      apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*; \
    fi \
 && groupadd --gid 10001 authz && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin authz
COPY --from=artifacts /out/authz-sidecar /usr/local/bin/authz-sidecar
COPY --from=artifacts /out/authz_filter.wasm /out/authz_filter.wasm.sha256 /opt/authz/
USER 10001:10001
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/authz-sidecar"]
