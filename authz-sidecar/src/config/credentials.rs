//! The credential sections: `apiKeys` (introspection caching, the keys' shape, the budget of
//! calls to the auth service), `actionTokens` (single use) and `failedCredentials` (per-client
//! limits). What they defend against is in the README's "Front door".

use std::time::Duration;

use authz_core::duration::serde_str;
use serde::Deserialize;

fn yes() -> bool {
    true
}
fn default_positive() -> Duration {
    Duration::from_secs(60)
}
fn default_negative() -> Duration {
    Duration::from_secs(10)
}

/// Step-up `X-Action-Token`s (route rules with `action`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActionTokenConfig {
    /// Each token authorises one request: its `jti` is held in Redis until the token expires,
    /// and a token without `jti` is refused. Redis away: action routes answer 503.
    #[serde(default = "yes")]
    pub single_use: bool,
}

impl Default for ActionTokenConfig {
    fn default() -> Self {
        Self { single_use: true }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// How long an active key's identity is reused (never past the key's `exp`).
    #[serde(default = "default_positive", with = "serde_str")]
    pub positive_ttl: Duration,
    /// How long a refused key stays refused without asking again.
    #[serde(default = "default_negative", with = "serde_str")]
    pub negative_ttl: Duration,
    /// The shape of the platform's keys (`prefix`, `minLength`, `maxLength`, `alphabet`:
    /// base64url, hex or alphanumeric); a key without it is refused (401 `api_key_malformed`)
    /// without asking the auth service. Empty: any key is asked about.
    #[serde(default)]
    pub format: authz_core::api_key_format::ApiKeyFormat,
    /// Introspection calls in flight at once; beyond, 503 `authz_overloaded`.
    #[serde(default = "default_max_introspections")]
    pub max_concurrent_introspections: usize,
    /// Introspection calls per second (a token bucket of `introspectionBurst`); beyond,
    /// 503 `authz_overloaded`. Cached answers do not count.
    #[serde(default = "default_introspection_rate")]
    pub introspection_rate: u32,
    #[serde(default = "default_introspection_burst")]
    pub introspection_burst: u32,
}

/// Per-client bounds on failed credentials (the client is Envoy's downstream address).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailedCredentialsConfig {
    /// Refused API keys (unknown or malformed) one client may present within `window`; past
    /// it, its unknown API keys are answered 429 `too_many_failed_credentials` without asking
    /// the auth service (keys already known still work). Refused JWTs are not counted: they
    /// cost no call to the auth service, and the key refetch they can cause is bounded by
    /// `jwks.minRefreshInterval`. 0: no limit.
    #[serde(default = "default_failures_per_client")]
    pub per_client: u32,
    #[serde(default = "default_failure_window", with = "serde_str")]
    pub window: Duration,
}

impl Default for FailedCredentialsConfig {
    fn default() -> Self {
        Self { per_client: default_failures_per_client(), window: default_failure_window() }
    }
}

fn default_max_introspections() -> usize {
    32
}
fn default_introspection_rate() -> u32 {
    100
}
fn default_introspection_burst() -> u32 {
    50
}
fn default_failures_per_client() -> u32 {
    50
}
fn default_failure_window() -> Duration {
    Duration::from_secs(60)
}

impl Default for ApiKeyConfig {
    fn default() -> Self {
        Self {
            positive_ttl: default_positive(),
            negative_ttl: default_negative(),
            format: Default::default(),
            max_concurrent_introspections: default_max_introspections(),
            introspection_rate: default_introspection_rate(),
            introspection_burst: default_introspection_burst(),
        }
    }
}
