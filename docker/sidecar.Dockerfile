# The sidecar image: the authz-sidecar binary, plus the wasm filter and its SHA-256 for the
# gateway pod's init container (k8s/40-gateway.yaml). Build from the repository root:
#   docker build -f docker/sidecar.Dockerfile -t ghcr.io/omnibioai/authz-sidecar:0.1.0 .
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod spec has liveness and readiness probes (k8s/40-gateway.yaml)
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN rustup target add wasm32-wasip1 \
 && cargo build --locked --release -p authz-sidecar \
 && cargo build --locked -p authz-filter --target wasm32-wasip1 --profile wasm-release \
 && mkdir -p /out \
 && cp target/release/authz-sidecar /out/ \
 && cp target/wasm32-wasip1/wasm-release/authz_filter.wasm /out/ \
 && cd /out && sha256sum authz_filter.wasm > authz_filter.wasm.sha256

# Debian slim: the init container needs sh, sha256sum and cp; the sidecar needs CA roots to
# reach an https auth service.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 authz && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin authz
COPY --from=build /out/authz-sidecar /usr/local/bin/authz-sidecar
COPY --from=build /out/authz_filter.wasm /out/authz_filter.wasm.sha256 /opt/authz/
USER 10001:10001
EXPOSE 9191 9192
ENTRYPOINT ["/usr/local/bin/authz-sidecar"]
