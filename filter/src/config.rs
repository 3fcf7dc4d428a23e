//! The filter's configuration: JSON in Envoy's plugin `configuration`, parsed in two phases.
//!
//! [`RawConfig`] mirrors the JSON (camelCase, unknown fields refused); [`Settings`] is the
//! validated form the filter runs with. Any error names the field, and Envoy refuses the plugin.
//! Only local knobs live here; what every decider shares comes from the sidecar
//! (`authz_core::settings`, applied by the control stream).

use std::time::Duration;

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
    /// Verified tokens remembered per worker.
    #[serde(default = "default_cache")]
    pub cache_capacity: usize,
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
    /// Largest request body buffered on a compute route (a `quota` rule); larger gets 413.
    #[serde(default = "default_max_compute_body")]
    pub max_compute_body_bytes: usize,
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
    #[error(
        "filter configuration field `{field}` has moved: set `{sidecar}` in the sidecar's configuration, which \
         pushes it to every filter with the route policy (so the filter and the sidecar cannot decide differently)"
    )]
    Moved { field: &'static str, sidecar: &'static str },
}

/// Keys the filter's JSON no longer takes, and where each lives now (the sidecar's YAML).
pub const MOVED: [(&str, &str); 9] = [
    ("issuers", "jwt.issuers"),
    ("audiences", "jwt.audiences"),
    ("clockSkew", "jwt.clockSkew"),
    ("publicPaths", "publicPaths"),
    ("publicPrefixes", "a policy rule with `prefix` and `public: true`"),
    ("stripHeaders", "stripHeaders"),
    ("overrideHeaders", "overrideHeaders"),
    ("tenantClaim", "tenantClaim"),
    ("apiKeyFormat", "apiKeys.format"),
];

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
    pub cache_capacity: usize,
    pub control_stream: bool,
    pub reconnect_interval: Duration,
    pub control_idle_timeout: Duration,
    pub revocation_stale_after: Duration,
    pub on_stale: OnStale,
    pub audit: bool,
    pub max_compute_body_bytes: usize,
}

/// The largest `maxComputeBodyBytes`: the sidecar's gRPC messages are bounded at 4 MiB.
pub const MAX_COMPUTE_BODY: usize = 4 << 20;

impl Settings {
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfigError> {
        // A configuration written for an older filter: say where the key went.
        if let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice::<serde_json::Value>(bytes)
            && let Some((field, sidecar)) = MOVED.iter().find(|(k, _)| fields.contains_key(*k))
        {
            return Err(ConfigError::Moved { field, sidecar });
        }
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
        if raw.cache_capacity > MAX_CACHE_CAPACITY {
            return Err(ConfigError::Field {
                field: "cacheCapacity",
                reason: format!(
                    "{} is more than {MAX_CACHE_CAPACITY} (about 1.3 KB of VM memory per cached identity, per worker)",
                    raw.cache_capacity
                ),
            });
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
            cache_capacity: raw.cache_capacity,
            control_stream: raw.control_stream,
            reconnect_interval,
            control_idle_timeout,
            revocation_stale_after: duration("revocationStaleAfter", &raw.revocation_stale_after)?,
            on_stale: raw.on_stale,
            audit: raw.audit,
            max_compute_body_bytes: raw.max_compute_body_bytes,
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
        assert!(s.control_stream);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{}"#, "sidecarCluster"),
            (r#"{"sidecarCluster": "c", "bogus": 1}"#, "bogus"),
            (r#"{"sidecarCluster": "c", "sidecarTimeout": "fast"}"#, "sidecarTimeout"),
            (r#"{"sidecarCluster": "c", "sidecarTimeout": "0ms"}"#, "sidecarTimeout"),
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

    #[test]
    fn a_moved_key_names_where_it_lives_now() {
        for (field, sidecar) in MOVED {
            let json = format!(r#"{{"sidecarCluster": "c", "{field}": []}}"#);
            let err = Settings::from_json(json.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(sidecar) && err.contains("sidecar's configuration"), "{err}");
        }
    }
}
