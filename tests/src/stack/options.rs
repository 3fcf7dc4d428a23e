//! What a test asks of its stack: the mode, the ports, the policy, and the sidecar's and the
//! filter's settings beyond the defaults.

use std::time::Duration;

use super::Ports;

/// Which authorization filter Envoy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `envoy/gateway.yaml`: the wasm filter, calling the sidecar only when needed.
    Wasm,
    /// `envoy/gateway-ext-authz.yaml`: Envoy's native ext_authz filter on every request.
    ExtAuthz,
    /// A configuration of the caller's (`Options::envoy_template`) without our filter, such as
    /// the benchmark's baselines: Envoy is only waited for until its listener answers.
    Custom,
}

/// The upstream services behind the gateway: (Envoy cluster, echo name, default local port).
pub const SERVICES: &[(&str, &str, u16)] = &[
    ("workbench", "workbench", 8000),
    ("tes", "tes", 8081),
    ("toolserver", "toolserver", 9090),
    ("model_registry", "model-registry", 8095),
    ("rag", "rag", 8096),
    ("lims", "lims", 7000),
];

#[derive(Debug, Clone)]
pub struct Options {
    pub mode: Mode,
    /// Envoy worker threads.
    pub concurrency: u32,
    pub ports: Ports,
    /// Echo upstreams on their documented ports instead of ephemeral ones.
    pub fixed_upstream_ports: bool,
    /// Extra JSON fields merged into the filter configuration (tests of config handling).
    pub filter_config_override: Option<serde_json::Value>,
    /// Route rules (a JSON array of `RouteSpec`): the sidecar's policy file, which it pushes
    /// to the filters.
    pub routes: serde_json::Value,
    /// The sidecar's background JWKS refresh period.
    pub jwks_refresh: Duration,
    /// The Envoy template for `Mode::Custom` (rendered with the same variables).
    pub envoy_template: Option<String>,
    /// Template variables that replace the stack's own (for example an upstream's address).
    pub var_overrides: Vec<(&'static str, String)>,
    /// CPUs Envoy is pinned to (`taskset -c` syntax), for benchmarks.
    pub envoy_cpus: Option<String>,
    /// YAML appended to the sidecar's configuration (for example a `quota:` section).
    pub sidecar_extra: String,
    /// Run Redis as a three-master Redis Cluster (ports: `ports.redis` and two more).
    pub redis_cluster: bool,
    /// Keep every request the echo upstreams receive in `Stack::seen`.
    pub record_upstream: bool,
    /// The HMAC secret as bytes, given to the sidecar in a file (`JWT_SECRET_FILE`); `None`:
    /// the development secret in `JWT_SECRET`.
    pub hmac_secret_file: Option<Vec<u8>>,
    /// The sidecar finds its keys by OpenID Connect discovery at the auth stand-in
    /// (`jwks.discovery`) instead of its JWKS path.
    pub jwks_discovery: bool,
    /// Redis requires this password (`--requirepass`, as `k8s/30-redis.yaml` runs it); the
    /// sidecar reads it from a file (`REDIS_PASSWORD_FILE`), its `redisUrl` stays without it.
    /// One Redis only, not with `redis_cluster`.
    pub redis_password: Option<String>,
    /// Start the sidecar and Envoy (false: only Redis, the auth stand-in and the upstreams, for
    /// a test that runs its own, such as from the built images).
    pub gateway: bool,
    /// More lines of the sidecar's `jwt:` block (indented two spaces), e.g. `claimToHeaders`.
    pub jwt_extra: String,
}

impl Options {
    pub fn test(mode: Mode) -> anyhow::Result<Self> {
        Ok(Self {
            mode,
            concurrency: 2,
            ports: Ports::ephemeral()?,
            fixed_upstream_ports: false,
            filter_config_override: None,
            routes: serde_json::json!([]),
            jwks_refresh: Duration::from_secs(300),
            envoy_template: None,
            var_overrides: Vec::new(),
            envoy_cpus: None,
            sidecar_extra: String::new(),
            redis_cluster: false,
            record_upstream: false,
            hmac_secret_file: None,
            redis_password: None,
            gateway: true,
            jwks_discovery: false,
            jwt_extra: String::new(),
        })
    }
}
