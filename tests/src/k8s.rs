//! The Kubernetes ConfigMaps, generated from the files the tests run: `envoy/gateway.yaml`
//! and `envoy/filter.json` rendered with the cluster's values, and the sidecar's example
//! policy verbatim. `k8s/20-config.yaml` is this module's output, committed; a test fails when
//! it differs from a fresh generation (`cargo run -p authz-e2e --bin gen-k8s` rewrites it).
//!
//! The cluster's values come from the environment, else from [`VALUES_FILE`]
//! (`k8s/cluster.env`, `NAME=value` lines). Four have no default and are refused when they
//! name a development or reserved host (`localhost`, loopback, `*.local` outside
//! `svc.cluster.local`, RFC 2606's `example.*`, `.test`, `.invalid`): `JWT_ISSUER` (the `iss`
//! the auth service writes), `JWT_AUDIENCE`, `IAM_URL` (the auth service as the gateway reaches
//! it; the Deployment's `IAM_URL` must be the same, a test checks) and `PLATFORM_NAMESPACE`
//! (where the services live: upstreams are `<service>.<namespace>.svc.cluster.local`). The others
//! default: `ROUTE_TIMEOUT` (seconds, 15), `XFF_TRUSTED_HOPS` (proxies in front of the gateway
//! trusted to append to `X-Forwarded-For`, 0), and `<SERVICE>_HOST` / `<SERVICE>_PORT` per
//! upstream (the architecture's service names and ports in `PLATFORM_NAMESPACE`).

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

/// The cluster's values, relative to the workspace (see the module's docs).
pub const VALUES_FILE: &str = "k8s/cluster.env";

/// The values without a default.
pub const REQUIRED: &[&str] = &["JWT_ISSUER", "JWT_AUDIENCE", "IAM_URL", "PLATFORM_NAMESPACE"];

/// A value from the environment (the process's, or a test's).
pub type Env = Box<dyn Fn(&str) -> Option<String>>;

/// Where the generator reads each value: the environment first, then [`VALUES_FILE`].
pub struct Values {
    file: BTreeMap<String, String>,
    env: Env,
}

impl Values {
    /// The process environment over the committed values file.
    pub fn load() -> anyhow::Result<Self> {
        let path = paths::workspace().join(VALUES_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Self::parse(&text, Box::new(|name| std::env::var(name).ok().filter(|v| !v.is_empty())))
    }

    /// `text` in the values file's format, under `env`.
    pub fn parse(text: &str, env: Env) -> anyhow::Result<Self> {
        let mut file = BTreeMap::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("{VALUES_FILE}:{}: not NAME=value: {line:?}", n + 1))?;
            // A comment may follow the value after whitespace (`ROUTE_TIMEOUT=15  # seconds`).
            let v = v.split(" #").next().unwrap_or(v).split("\t#").next().unwrap_or(v);
            file.insert(k.trim().to_string(), v.trim().to_string());
        }
        let values = Self { file, env };
        let missing: Vec<&str> = REQUIRED.iter().copied().filter(|k| values.get(k).is_none()).collect();
        anyhow::ensure!(
            missing.is_empty(),
            "no value for {} (set them in {VALUES_FILE} or the environment; there are no defaults)",
            missing.join(", ")
        );
        for name in ["JWT_ISSUER", "IAM_URL"] {
            let value = values.required(name)?;
            let url =
                reqwest::Url::parse(&value).map_err(|e| anyhow::anyhow!("{name}={value:?} is not a URL ({e})"))?;
            let host = url.host_str().unwrap_or_default();
            anyhow::ensure!(
                !development_host(host),
                "{name}={value:?} names a development host; set the cluster's own ({VALUES_FILE})"
            );
        }
        let namespace = values.required("PLATFORM_NAMESPACE")?;
        anyhow::ensure!(
            !namespace.is_empty()
                && namespace.len() <= 63
                && namespace.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "PLATFORM_NAMESPACE={namespace:?} is not a Kubernetes namespace name"
        );
        Ok(values)
    }

    pub fn get(&self, name: &str) -> Option<String> {
        (self.env)(name).or_else(|| self.file.get(name).cloned()).filter(|v| !v.is_empty())
    }

    fn required(&self, name: &str) -> anyhow::Result<String> {
        self.get(name).ok_or_else(|| anyhow::anyhow!("no value for {name}"))
    }

    fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_string())
    }
}

/// A host that no cluster's auth service has: the development stand-in's, loopback, mDNS
/// `.local` (but for Kubernetes' own `svc.cluster.local`), and the names RFC 2606 reserves.
fn development_host(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let reserved = ["localhost", "example", "test", "invalid"];
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback())
        || reserved.iter().any(|r| host == *r || host.ends_with(&format!(".{r}")))
        || ["example.com", "example.net", "example.org"].iter().any(|r| host == *r || host.ends_with(&format!(".{r}")))
        || (host.ends_with(".local") && !host.ends_with(".svc.cluster.local"))
}

/// The placeholders of the Envoy templates, in the cluster.
pub fn envoy_vars(values: &Values) -> anyhow::Result<BTreeMap<&'static str, String>> {
    let mut vars: BTreeMap<&'static str, String> = BTreeMap::new();
    vars.insert("SIDECAR_TIMEOUT", "250ms".into());
    vars.insert("SIDECAR_TIMEOUT_ENVOY", "0.25s".into());
    vars.insert("JWT_ISSUER", values.required("JWT_ISSUER")?);
    vars.insert("JWT_AUDIENCE", values.required("JWT_AUDIENCE")?);
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
    let timeout: u64 = values.or("ROUTE_TIMEOUT", "15").parse()?;
    vars.insert("ROUTE_TIMEOUT", format!("{timeout}s"));
    // The sidecar shares the pod: gRPC over a Unix socket in a shared emptyDir, which only
    // the pod's containers can open.
    vars.insert("SIDECAR_ADDRESS", crate::stack::pipe_address(std::path::Path::new(SIDECAR_SOCKET)));
    vars.insert("XFF_TRUSTED_HOPS", values.or("XFF_TRUSTED_HOPS", "0"));
    // The lease API's route reaches the sidecar's admin port inside the pod.
    vars.insert("SIDECAR_ADMIN_HOST", "127.0.0.1".into());
    vars.insert("SIDECAR_ADMIN_PORT", SIDECAR_ADMIN_PORT.to_string());
    // The auth service, as IAM_URL names it (the Deployment's IAM_URL is the same).
    let iam = reqwest::Url::parse(&values.required("IAM_URL")?)?;
    vars.insert("IAM_HOST", iam.host_str().unwrap_or_default().to_string());
    vars.insert("IAM_PORT", iam.port_or_known_default().unwrap_or(80).to_string());
    // The services live in the platform's namespace, not the gateway's: a bare name would
    // resolve in `authz-gateway` and every route would answer 503.
    let platform = values.required("PLATFORM_NAMESPACE")?;
    for (cluster, name, port) in SERVICES {
        let upper = cluster.to_ascii_uppercase();
        let host_var: &'static str = Box::leak(format!("{upper}_HOST").into_boxed_str());
        let port_var: &'static str = Box::leak(format!("{upper}_PORT").into_boxed_str());
        vars.insert(host_var, values.or(host_var, &format!("{name}.{platform}.svc.cluster.local")));
        vars.insert(port_var, values.or(port_var, &port.to_string()));
    }
    Ok(vars)
}

/// The sidecar's configuration in the cluster. Secrets and the auth service's address come
/// from the Deployment's environment (`JWT_SECRET` from the Secret, `IAM_URL`, `REDIS_URL`).
pub fn sidecar_config(values: &Values) -> anyhow::Result<String> {
    Ok(format!(
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
        issuer = yaml_string(&values.required("JWT_ISSUER")?),
        audience = yaml_string(&values.required("JWT_AUDIENCE")?),
        socket = SIDECAR_SOCKET,
        admin = SIDECAR_ADMIN_PORT,
    ))
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
    let values = Values::load()?;
    let envoy =
        render(&std::fs::read_to_string(paths::workspace().join("envoy/gateway.yaml"))?, &envoy_vars(&values)?)?;
    let policy = std::fs::read_to_string(paths::workspace().join("authz-sidecar/policy.example.yaml"))?;
    Ok(format!(
        "# GENERATED by `cargo run -p authz-e2e --bin gen-k8s` from envoy/gateway.yaml, envoy/filter.json\n\
         # and authz-sidecar/policy.example.yaml with k8s/cluster.env; a test fails if it differs.\n\
         # Do not edit by hand.\n\
         {}---\n{}",
        configmap("authz-envoy", &[("envoy.yaml", envoy)]),
        configmap("authz-sidecar", &[("sidecar.yaml", sidecar_config(&values)?), ("policy.yaml", policy)]),
    ))
}
