//! The filter's configuration: JSON in Envoy's plugin `configuration`, parsed in two phases.
//!
//! [`RawConfig`] mirrors the JSON (camelCase, unknown fields refused); [`Settings`] is the
//! validated form the filter runs with. Any error names the field, and Envoy refuses the plugin.

use std::time::Duration;

use authz_core::ClaimsPolicy;
use authz_core::api_key_format::ApiKeyFormat;
use authz_core::claims::Scope;
use authz_core::headers::StripRules;
use authz_core::routes::RouteTable;
use serde::Deserialize;

/// The configuration as written.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RawConfig {
    /// Envoy cluster of the sidecar's gRPC port (ext_authz `Check` and the control stream).
    pub sidecar_cluster: String,
    /// The sidecar's gRPC token (`SIDECAR_GRPC_TOKEN`), sent as `authorization: Bearer` on
    /// every call, for a sidecar reached over TCP. Not needed over the Unix socket of the
    /// shipped configurations; it sits in Envoy's configuration, so keep that private.
    #[serde(default)]
    pub sidecar_token: Option<String>,
    /// Deadline of a `Check` callout; past it the request gets 503.
    #[serde(default = "default_timeout")]
    pub sidecar_timeout: String,
    /// Accepted `iss` values; empty accepts any.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one match suffices); empty skips the check.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`.
    #[serde(default = "default_skew")]
    pub clock_skew: String,
    /// Verified tokens remembered per worker.
    #[serde(default = "default_cache")]
    pub cache_capacity: usize,
    /// Paths (without query) that need no credential.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// Path prefixes that need no credential.
    #[serde(default)]
    pub public_prefixes: Vec<String>,
    /// Extra header names removed from every request, beyond `x-user-*`, `x-internal-service`
    /// and `x-quota-lease`.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Method and URL override headers removed from every request (`X-HTTP-Method-Override`,
    /// `X-Original-URL`, ...); absent: the built-in list (`authz_core::headers`).
    #[serde(default)]
    pub override_headers: Option<Vec<String>>,
    /// Keep a control stream to the sidecar for keys (off: every token whose key is not
    /// known goes to the sidecar).
    #[serde(default = "yes")]
    pub control_stream: bool,
    /// Delay before the second attempt to reconnect a lost control stream (the first is made
    /// at the next 200 ms tick); doubles up to 30 s while attempts keep failing.
    #[serde(default = "default_reconnect")]
    pub reconnect_interval: String,
    /// A control stream silent for this long (the sidecar heartbeats every
    /// `controlHeartbeatInterval`, 500 ms by default) is dead even if it never closed: a hung
    /// sidecar or a half-open connection. The filter drops it, reconnects, and counts the
    /// revocation set's staleness from the last event it received.
    #[serde(default = "default_idle")]
    pub control_idle_timeout: String,
    /// How long the filter trusts its revocation set without a live control stream (and
    /// before the first snapshot arrives). Past it, see `onStale`.
    #[serde(default = "default_stale")]
    pub revocation_stale_after: String,
    /// With a stale revocation set: `sidecar` asks the sidecar for every bearer request (one
    /// gRPC call each, correct while the sidecar is up), `deny` answers 503.
    #[serde(default = "default_on_stale")]
    pub on_stale: OnStale,
    /// Attach each decision to Envoy's access log as filter state `wasm.authz_audit` (read by
    /// the sidecar's access-log service). Off only for measurements.
    #[serde(default = "yes")]
    pub audit: bool,
    /// The claim naming the caller's lab or tenant (audit events; quota is the sidecar's).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    /// Largest request body buffered on a compute route (a `quota` rule); larger gets 413.
    #[serde(default = "default_max_compute_body")]
    pub max_compute_body_bytes: usize,
    /// The shape of the platform's API keys (prefix, length, alphabet); a key without it is
    /// refused here (401 `api_key_malformed`) instead of costing a callout. Empty: any key.
    #[serde(default)]
    pub api_key_format: ApiKeyFormat,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_max_compute_body() -> usize {
    1 << 20
}

/// What a filter does when its revocation set is stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStale {
    Sidecar,
    Deny,
}

fn default_idle() -> String {
    "2s".into()
}
fn default_stale() -> String {
    "2s".into()
}
fn default_on_stale() -> OnStale {
    OnStale::Sidecar
}

fn default_timeout() -> String {
    "250ms".into()
}
fn default_skew() -> String {
    "60s".into()
}
fn default_cache() -> usize {
    10_000
}
fn default_reconnect() -> String {
    "500ms".into()
}
fn yes() -> bool {
    true
}

/// A configuration error, naming the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("filter configuration is not valid: at `{path}`: {reason}")]
    Json { path: String, reason: String },
    #[error("filter configuration field `{field}`: {reason}")]
    Field { field: &'static str, reason: String },
}

/// The largest `cacheCapacity` accepted. A cached identity takes about 1.3 KB of the worker's
/// VM memory (claims included, since policy may read any claim); measured in the benchmark's
/// memory curve, a VM failed after about 0.7-0.8M, so the bound leaves a wide margin.
pub const MAX_CACHE_CAPACITY: usize = 200_000;

/// gRPC metadata sent to the sidecar; never printed (it holds the token).
pub struct SidecarMetadata(pub Vec<(String, Vec<u8>)>);

impl SidecarMetadata {
    /// In the form `dispatch_grpc_call` and `open_grpc_stream` take.
    pub fn pairs(&self) -> Vec<(&str, &[u8])> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect()
    }
}

impl std::fmt::Debug for SidecarMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "[]" } else { "[authorization: ***]" })
    }
}

/// The validated configuration.
#[derive(Debug)]
pub struct Settings {
    pub sidecar_cluster: String,
    /// `authorization` metadata for every call to the sidecar (empty without a token).
    pub sidecar_metadata: SidecarMetadata,
    pub sidecar_timeout: Duration,
    pub claims: ClaimsPolicy,
    pub cache_capacity: usize,
    /// The always-public paths, usable before the sidecar has pushed the route policy.
    pub bootstrap_routes: RouteTable,
    pub public_paths: Vec<String>,
    pub public_prefixes: Vec<String>,
    /// Default issuers and audiences (routes may override them).
    pub scope: Scope,
    pub strip: StripRules,
    pub control_stream: bool,
    pub reconnect_interval: Duration,
    pub control_idle_timeout: Duration,
    pub revocation_stale_after: Duration,
    pub on_stale: OnStale,
    pub audit: bool,
    pub tenant_claim: String,
    pub max_compute_body_bytes: usize,
    pub api_key_format: ApiKeyFormat,
}

/// The largest `maxComputeBodyBytes`: the sidecar's gRPC messages are bounded at 4 MiB.
pub const MAX_COMPUTE_BODY: usize = 4 << 20;

impl Settings {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let raw: RawConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| ConfigError::Json { path: e.path().to_string(), reason: e.inner().to_string() })?;
        Self::try_from(raw)
    }
}

fn duration(field: &'static str, s: &str) -> Result<Duration, ConfigError> {
    authz_core::duration::parse(s).map_err(|e| ConfigError::Field { field, reason: e.to_string() })
}

impl TryFrom<RawConfig> for Settings {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        if raw.sidecar_cluster.trim().is_empty() {
            return Err(ConfigError::Field { field: "sidecarCluster", reason: "must not be empty".into() });
        }
        let sidecar_timeout = duration("sidecarTimeout", &raw.sidecar_timeout)?;
        if sidecar_timeout.is_zero() {
            return Err(ConfigError::Field { field: "sidecarTimeout", reason: "must be greater than zero".into() });
        }
        let skew = duration("clockSkew", &raw.clock_skew)?;
        if raw.cache_capacity > MAX_CACHE_CAPACITY {
            return Err(ConfigError::Field {
                field: "cacheCapacity",
                reason: format!(
                    "{} is more than {MAX_CACHE_CAPACITY} (about 1.3 KB of VM memory per cached identity, per worker)",
                    raw.cache_capacity
                ),
            });
        }
        for p in raw.public_paths.iter().chain(&raw.public_prefixes) {
            if !p.starts_with('/') {
                return Err(ConfigError::Field { field: "publicPaths", reason: format!("{p:?} must start with '/'") });
            }
        }
        if raw.max_compute_body_bytes > MAX_COMPUTE_BODY {
            return Err(ConfigError::Field {
                field: "maxComputeBodyBytes",
                reason: format!("{} is more than {MAX_COMPUTE_BODY}", raw.max_compute_body_bytes),
            });
        }
        let reconnect_interval = duration("reconnectInterval", &raw.reconnect_interval)?;
        if reconnect_interval.is_zero() {
            return Err(ConfigError::Field { field: "reconnectInterval", reason: "must be greater than zero".into() });
        }
        let control_idle_timeout = duration("controlIdleTimeout", &raw.control_idle_timeout)?;
        if control_idle_timeout.is_zero() {
            return Err(ConfigError::Field { field: "controlIdleTimeout", reason: "must be greater than zero".into() });
        }
        let bootstrap_routes = RouteTable::new(raw.public_paths.clone(), raw.public_prefixes.clone(), Vec::new())
            .map_err(|e| ConfigError::Field { field: "publicPaths", reason: e.to_string() })?;
        let claims = ClaimsPolicy { issuers: raw.issuers, audiences: raw.audiences, clock_skew_secs: skew.as_secs() };
        let sidecar_metadata = match raw.sidecar_token {
            Some(t) if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                return Err(ConfigError::Field {
                    field: "sidecarToken",
                    reason: "must be printable ASCII without spaces".into(),
                });
            }
            Some(t) => SidecarMetadata(vec![("authorization".to_string(), format!("Bearer {t}").into_bytes())]),
            None => SidecarMetadata(Vec::new()),
        };
        Ok(Self {
            sidecar_cluster: raw.sidecar_cluster,
            sidecar_metadata,
            sidecar_timeout,
            scope: claims.scope(),
            claims,
            cache_capacity: raw.cache_capacity,
            bootstrap_routes,
            public_paths: raw.public_paths,
            public_prefixes: raw.public_prefixes,
            strip: StripRules::configured(raw.strip_headers, raw.override_headers),
            control_stream: raw.control_stream,
            reconnect_interval,
            control_idle_timeout,
            revocation_stale_after: duration("revocationStaleAfter", &raw.revocation_stale_after)?,
            on_stale: raw.on_stale,
            audit: raw.audit,
            tenant_claim: raw.tenant_claim,
            max_compute_body_bytes: raw.max_compute_body_bytes,
            api_key_format: {
                raw.api_key_format.validate().map_err(|reason| ConfigError::Field { field: "apiKeyFormat", reason })?;
                raw.api_key_format
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let s = Settings::from_json(br#"{"sidecarCluster": "authz_sidecar"}"#).unwrap();
        assert_eq!(s.sidecar_timeout, Duration::from_millis(250));
        assert_eq!(s.claims.clock_skew_secs, 60);
        assert!(s.control_stream);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{}"#, "sidecarCluster"),
            (r#"{"sidecarCluster": "c", "bogus": 1}"#, "bogus"),
            (r#"{"sidecarCluster": "c", "sidecarTimeout": "fast"}"#, "sidecarTimeout"),
            (r#"{"sidecarCluster": "c", "sidecarTimeout": "0ms"}"#, "sidecarTimeout"),
            (r#"{"sidecarCluster": "c", "clockSkew": "1 minute"}"#, "clockSkew"),
            (r#"{"sidecarCluster": "c", "publicPaths": ["health"]}"#, "publicPaths"),
            (r#"{"sidecarCluster": "c", "cacheCapacity": -1}"#, "cacheCapacity"),
            (r#"{"sidecarCluster": "c", "cacheCapacity": 200001}"#, "cacheCapacity"),
            (r#"{"sidecarCluster": ""}"#, "sidecarCluster"),
            (r#"{"sidecarCluster": "c", "onStale": "allow"}"#, "onStale"),
            (r#"{"sidecarCluster": "c", "revocationStaleAfter": "never"}"#, "revocationStaleAfter"),
            (r#"{"sidecarCluster": "c", "controlIdleTimeout": "0s"}"#, "controlIdleTimeout"),
            (r#"{"sidecarCluster": "c", "reconnectInterval": "0s"}"#, "reconnectInterval"),
            (r#"{"sidecarCluster": "c", "routes": []}"#, "routes"),
            (r#"{"sidecarCluster": "c", "maxComputeBodyBytes": 99999999}"#, "maxComputeBodyBytes"),
        ];
        for (json, field) in cases {
            let err = Settings::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(field), "{json}: {err}");
        }
    }
}
