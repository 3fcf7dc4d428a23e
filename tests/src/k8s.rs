//! The Kubernetes ConfigMaps, generated from the files the tests run: `envoy/gateway.yaml`
//! and `envoy/filter.json` rendered with the in-cluster values below, and the sidecar's example
//! policy verbatim. `k8s/20-config.yaml` is this module's output, committed; a test fails when
//! it differs from a fresh generation (`cargo run -p authz-e2e --bin gen-k8s` rewrites it).
//!
//! In-cluster values can be changed at generation time through the environment:
//! `ROUTE_TIMEOUT` (seconds, default 15), `JWT_ISSUER`, `JWT_AUDIENCE`, `XFF_TRUSTED_HOPS`
//! (proxies in front of the gateway trusted to append to `X-Forwarded-For`, default 0),
//! `IAM_HOST` / `IAM_PORT` (the auth service, default as the Deployment's `IAM_URL`), and `<SERVICE>_HOST` /
//! `<SERVICE>_PORT` for the upstreams (default: the service names and ports of the
//! architecture, qualified with `PLATFORM_NAMESPACE`, default `platform`:
//! `workbench.platform.svc.cluster.local`).

use std::collections::BTreeMap;

use crate::paths;
use crate::render::{render, yaml_string};
use crate::stack::SERVICES;

pub const NAMESPACE: &str = "authz-gateway";
/// Where the init container puts the filter (a shared `emptyDir`).
pub const WASM_PATH: &str = "/var/lib/authz/wasm/authz_filter.wasm";
/// The sidecar's gRPC socket (a shared `emptyDir` at `/run/authz`).
pub const SIDECAR_SOCKET: &str = "/run/authz/sidecar.sock";
/// Envoy's `/stats/prometheus` listener in the pod.
pub const STATS_PORT: u16 = 9902;
/// The sidecar's admin port (`/healthz`, `/readyz`, `/metrics`, the lease API).
pub const SIDECAR_ADMIN_PORT: u16 = 9192;
/// The generated file, relative to the workspace.
pub const CONFIG_FILE: &str = "k8s/20-config.yaml";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).ok().filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_string())
}

/// The placeholders of the Envoy templates, in the cluster.
pub fn envoy_vars() -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut vars: BTreeMap<&'static str, String> = BTreeMap::new();
    vars.insert("SIDECAR_TIMEOUT", "250ms".into());
    vars.insert("SIDECAR_TIMEOUT_ENVOY", "0.25s".into());
    vars.insert("JWT_ISSUER", env_or("JWT_ISSUER", "https://auth.dev.local"));
    vars.insert("JWT_AUDIENCE", env_or("JWT_AUDIENCE", "platform-gateway"));
    let filter = render(&std::fs::read_to_string(paths::workspace().join("envoy/filter.json"))?, &vars)?;
    // Compact JSON, checked to be JSON: it travels as one YAML string.
    let filter: serde_json::Value = serde_json::from_str(&filter)?;
    vars.insert("FILTER_CONFIG", yaml_string(&filter.to_string()));
    vars.insert("WASM_PATH", WASM_PATH.into());
    // Envoy's admin answers only inside the pod (probes use the listener's /health).
    vars.insert("ADMIN_ADDRESS", "127.0.0.1".into());
    vars.insert("ADMIN_PORT", "9901".into());
    vars.insert("LISTEN_ADDRESS", "0.0.0.0".into());
    vars.insert("LISTEN_PORT", "8080".into());
    // Envoy's stats for Prometheus (the PodMonitor in k8s/monitoring scrapes it).
    vars.insert("STATS_ADDRESS", "0.0.0.0".into());
    vars.insert("STATS_PORT", STATS_PORT.to_string());
    let timeout: u64 = env_or("ROUTE_TIMEOUT", "15").parse()?;
    vars.insert("ROUTE_TIMEOUT", format!("{timeout}s"));
    // The sidecar shares the pod: gRPC over a Unix socket in a shared emptyDir, which only
    // the pod's containers can open.
    vars.insert("SIDECAR_ADDRESS", crate::stack::pipe_address(std::path::Path::new(SIDECAR_SOCKET)));
    vars.insert("XFF_TRUSTED_HOPS", env_or("XFF_TRUSTED_HOPS", "0"));
    // The lease API's route reaches the sidecar's admin port inside the pod.
    vars.insert("SIDECAR_ADMIN_HOST", "127.0.0.1".into());
    vars.insert("SIDECAR_ADMIN_PORT", SIDECAR_ADMIN_PORT.to_string());
    // The auth service, as the Deployment's IAM_URL names it.
    vars.insert("IAM_HOST", env_or("IAM_HOST", "auth-service.platform.svc.cluster.local"));
    vars.insert("IAM_PORT", env_or("IAM_PORT", "8000"));
    // The services live in the platform's namespace, not the gateway's: a bare name would
    // resolve in `authz-gateway` and every route would answer 503.
    let platform = env_or("PLATFORM_NAMESPACE", "platform");
    for (cluster, name, port) in SERVICES {
        let upper = cluster.to_ascii_uppercase();
        let host_var: &'static str = Box::leak(format!("{upper}_HOST").into_boxed_str());
        let port_var: &'static str = Box::leak(format!("{upper}_PORT").into_boxed_str());
        vars.insert(host_var, env_or(host_var, &format!("{name}.{platform}.svc.cluster.local")));
        vars.insert(port_var, env_or(port_var, &port.to_string()));
    }
    Ok(vars)
}

/// The sidecar's configuration in the cluster. Secrets and the auth service's address come
/// from the Deployment's environment (`JWT_SECRET` from the Secret, `IAM_URL`, `REDIS_URL`).
pub fn sidecar_config() -> String {
    format!(
        "# authz-sidecar in the gateway pod (every key: authz-sidecar/config.example.yaml).\n\
         # IAM_URL, REDIS_URL and JWT_SECRET come from the Deployment's environment.\n\
         grpcListen: \"unix:{socket}\"\n\
         adminListen: 0.0.0.0:{admin}\n\
         jwt:\n  issuers: [{issuer}]\n  audiences: [{audience}]\n\
         publicPaths: [/health]\n\
         policyFile: /etc/authz/policy/policy.yaml\n\
         # Sized for the Redis of 30-redis.yaml (640 MB, noeviction): about 100 MB of audit events.\n\
         audit:\n  maxLen: 200000\n\
         log:\n  format: json\n  level: info\n",
        issuer = yaml_string(&env_or("JWT_ISSUER", "https://auth.dev.local")),
        audience = yaml_string(&env_or("JWT_AUDIENCE", "platform-gateway")),
        socket = SIDECAR_SOCKET,
        admin = SIDECAR_ADMIN_PORT,
    )
}

/// `text` as a YAML literal block under a key indented by two spaces.
fn block(key: &str, text: &str) -> String {
    let mut out = format!("  {key}: |\n");
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            out.push_str("    ");
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    out
}

fn configmap(name: &str, entries: &[(&str, String)]) -> String {
    let mut out = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {NAMESPACE}\n  labels:\n    \
         app.kubernetes.io/name: authz-gateway\n    app.kubernetes.io/part-of: authz-gateway\ndata:\n"
    );
    for (key, text) in entries {
        out.push_str(&block(key, text));
    }
    out
}

/// The Prometheus Operator's objects in `k8s/monitoring/` (applied on their own,
/// `kubectl apply -f k8s/monitoring/`, where the operator's CRDs exist), generated from
/// `observability/`: the scrape of the sidecar and of Envoy, the alert rules, and the Grafana
/// dashboard as a ConfigMap that Grafana's dashboard sidecar loads.
pub const MONITORING_DIR: &str = "k8s/monitoring";

/// Each file of [`MONITORING_DIR`] with its text.
pub fn monitoring_files() -> anyhow::Result<Vec<(&'static str, String)>> {
    let root = paths::workspace().join("observability");
    let header = "# GENERATED by `cargo run -p authz-e2e --bin gen-k8s` from observability/; a test fails if it\n\
                  # differs. Do not edit by hand. Needs the Prometheus Operator's CRDs.\n";
    let labels = "    app.kubernetes.io/name: authz-gateway\n    app.kubernetes.io/part-of: authz-gateway\n";
    let pod_monitor = format!(
        "{header}apiVersion: monitoring.coreos.com/v1\nkind: PodMonitor\nmetadata:\n  name: authz-gateway\n  \
         namespace: {NAMESPACE}\n  labels:\n{labels}spec:\n  selector:\n    matchLabels:\n      \
         app.kubernetes.io/name: authz-gateway\n  podMetricsEndpoints:\n  \
         - port: admin             # the sidecar: /metrics\n    path: /metrics\n    interval: 30s\n  \
         - port: stats             # Envoy: /stats/prometheus only (the admin API stays in the pod)\n    \
         path: /stats/prometheus\n    interval: 30s\n"
    );
    let alerts = std::fs::read_to_string(root.join("alerts.yaml"))?;
    let groups =
        alerts.split_once("\ngroups:\n").map(|(_, g)| g).ok_or_else(|| anyhow::anyhow!("alerts.yaml: no groups"))?;
    let mut rule = format!(
        "{header}apiVersion: monitoring.coreos.com/v1\nkind: PrometheusRule\nmetadata:\n  name: authz-gateway\n  \
         namespace: {NAMESPACE}\n  labels:\n{labels}spec:\n  groups:\n"
    );
    for line in groups.lines() {
        if !line.is_empty() {
            rule.push_str("  ");
        }
        rule.push_str(line);
        rule.push('\n');
    }
    let dashboard = std::fs::read_to_string(root.join("dashboard.json"))?;
    let mut cm = format!(
        "{header}apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: authz-gateway-dashboard\n  \
         namespace: {NAMESPACE}\n  labels:\n{labels}    grafana_dashboard: \"1\"   # picked up by Grafana's dashboard sidecar\n\
         data:\n"
    );
    cm.push_str(&block("authz-gateway.json", &dashboard));
    Ok(vec![("pod-monitor.yaml", pod_monitor), ("prometheus-rule.yaml", rule), ("grafana-dashboard.yaml", cm)])
}

/// The text of [`CONFIG_FILE`].
pub fn config_file() -> anyhow::Result<String> {
    let envoy = render(&std::fs::read_to_string(paths::workspace().join("envoy/gateway.yaml"))?, &envoy_vars()?)?;
    let policy = std::fs::read_to_string(paths::workspace().join("authz-sidecar/policy.example.yaml"))?;
    Ok(format!(
        "# GENERATED by `cargo run -p authz-e2e --bin gen-k8s` from envoy/gateway.yaml, envoy/filter.json\n\
         # and authz-sidecar/policy.example.yaml; a test fails if it differs. Do not edit by hand.\n\
         {}---\n{}",
        configmap("authz-envoy", &[("envoy.yaml", envoy)]),
        configmap("authz-sidecar", &[("sidecar.yaml", sidecar_config()), ("policy.yaml", policy)]),
    ))
}
