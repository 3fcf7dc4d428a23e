//! Sidecar configuration: a YAML file, then environment overrides, then validation.
//!
//! Unknown keys are an error. Secrets come only from the environment (`JWT_SECRET`) and are
//! never printed: [`Config`]'s `Debug` redacts them, and URLs are logged without credentials.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

mod audit;
mod credentials;
mod derived;
mod env;
mod keys;
mod providers;
mod quota;

pub use audit::AuditConfig;
pub use credentials::{ActionTokenConfig, ApiKeyConfig, FailedCredentialsConfig};
pub use env::{Env, ProcessEnv};
use keys::check_key_source;
pub use keys::{JwksConfig, JwtConfig};
pub use providers::ProviderConfig;
pub use quota::{Limits, QuotaConfig};

use crate::policy::{self, Policy, PolicyError};
use crate::serve::listen::{self as listen, Listeners};
use authz_core::duration::serde_str;
use authz_core::headers::StripRules;
use serde::Deserialize;

/// Everything the sidecar runs with.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    /// gRPC listeners (one address or a list; `host:port` or `unix:/path`): ext_authz
    /// `Check`, the `authz.v1` control stream, gRPC health. Loopback by default; a TCP address
    /// off loopback needs `SIDECAR_GRPC_TOKEN` (see `listen.rs`).
    #[serde(default)]
    pub grpc_listen: Listeners,
    /// HTTP listener: `/healthz`, `/readyz`, `/metrics`. Loopback by default.
    #[serde(default = "default_admin")]
    pub admin_listen: SocketAddr,
    /// Base URL of the platform's auth service (env `IAM_URL`).
    #[serde(default)]
    pub iam_url: String,
    /// Redis for the shared identity cache (env `REDIS_URL`); with `redisCluster`, a
    /// comma-separated list of seed nodes.
    #[serde(default)]
    pub redis_url: String,
    /// `redisUrl` names a Redis Cluster (env `REDIS_CLUSTER=true`).
    #[serde(default)]
    pub redis_cluster: bool,
    #[serde(default)]
    pub jwt: JwtConfig,
    #[serde(default)]
    pub jwks: JwksConfig,
    /// Identity providers besides the default one (`jwt` and `jwks`), each with its issuer
    /// and keys (see `config/providers.rs` and the README).
    #[serde(default)]
    pub providers: Vec<ProviderConfig>,
    #[serde(default)]
    pub cache: CacheConfig,
    /// Paths (without query) that need no credential; identity headers are still removed.
    #[serde(default)]
    pub public_paths: Vec<String>,
    /// The route policy (YAML, see the README); watched and hot-reloaded. Without one, every
    /// non-public request needs a valid credential and nothing more.
    #[serde(default)]
    pub policy_file: Option<std::path::PathBuf>,
    /// How often the policy file is checked for changes.
    #[serde(default = "default_policy_interval", with = "serde_str")]
    pub policy_reload_interval: Duration,
    /// A heartbeat on each control stream after this long without another event: below every
    /// filter's `controlIdleTimeout`, which treats a longer silence as a dead stream.
    #[serde(default = "default_heartbeat", with = "serde_str")]
    pub control_heartbeat_interval: Duration,
    #[serde(default)]
    pub api_keys: ApiKeyConfig,
    #[serde(default)]
    pub action_tokens: ActionTokenConfig,
    #[serde(default)]
    pub failed_credentials: FailedCredentialsConfig,
    #[serde(default)]
    pub revocation: RevocationConfig,
    /// How long a session check's answer is reused (`requireSession` routes).
    #[serde(default = "default_session_ttl", with = "serde_str")]
    pub session_cache_ttl: Duration,
    /// Extra header names removed from every request, beyond `x-user-*`, `x-internal-service`
    /// and `x-quota-lease`.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Method, URL and foreign identity override headers removed from every request; absent:
    /// the built-in list (`authz_core::headers::DEFAULT_OVERRIDE_HEADERS`).
    #[serde(default)]
    pub override_headers: Option<Vec<String>>,
    /// Timeout of each call to the auth service (JWKS, introspection).
    #[serde(default = "default_iam_timeout", with = "serde_str")]
    pub iam_timeout: Duration,
    #[serde(default)]
    pub log: LogConfig,
    /// The claim naming the caller's lab or tenant (quota per lab, audit events).
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default)]
    pub quota: QuotaConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// HMAC secret for the platform's kid-less HS256 tokens. Environment only (`JWT_SECRET`,
    /// or `JWT_SECRET_FILE` naming a file that holds it).
    #[serde(skip)]
    pub jwt_secret: Option<Vec<u8>>,
    /// The token every gRPC call over TCP must carry (`authorization: Bearer <token>`).
    /// Environment only (`SIDECAR_GRPC_TOKEN`, or `SIDECAR_GRPC_TOKEN_FILE`).
    #[serde(skip)]
    pub grpc_token: Option<String>,
}

/// Where the auth service publishes and stores revocations (the README's contract).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RevocationConfig {
    /// Pub/sub channel of revocation events.
    #[serde(default = "default_channel")]
    pub channel: String,
    /// Prefix of the stored revocation keys (`<prefix><kind>:<id>`).
    #[serde(default = "default_rev_prefix")]
    pub key_prefix: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CacheConfig {
    /// Identities kept in memory.
    #[serde(default = "default_capacity")]
    pub memory_capacity: u64,
    /// Prefix of every Redis key the sidecar writes.
    #[serde(default = "default_prefix")]
    pub redis_prefix: String,
    /// Upper bound on how long an identity is cached, whatever the token's `exp`.
    #[serde(default = "default_max_ttl", with = "serde_str")]
    pub max_ttl: Duration,
    /// Deadline of each Redis command; a slow Redis is treated as absent.
    #[serde(default = "default_redis_timeout", with = "serde_str")]
    pub redis_timeout: Duration,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`.
    #[serde(default = "default_format")]
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `authz_sidecar=debug` (env `RUST_LOG` wins).
    #[serde(default = "default_level")]
    pub level: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

fn default_tenant_claim() -> String {
    "tenant".into()
}
fn default_admin() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9192))
}
fn default_iam_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_policy_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_heartbeat() -> Duration {
    Duration::from_millis(500)
}
fn default_channel() -> String {
    "authz:revocations".into()
}
fn default_rev_prefix() -> String {
    "authz:revoked:".into()
}
fn default_session_ttl() -> Duration {
    Duration::from_secs(5)
}
fn default_capacity() -> u64 {
    100_000
}
fn default_prefix() -> String {
    "authz:".into()
}
fn default_max_ttl() -> Duration {
    Duration::from_secs(3600)
}
fn default_redis_timeout() -> Duration {
    Duration::from_millis(250)
}
fn default_format() -> LogFormat {
    LogFormat::Text
}
fn default_level() -> String {
    "info".into()
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self { channel: default_channel(), key_prefix: default_rev_prefix() }
    }
}
impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            memory_capacity: default_capacity(),
            redis_prefix: default_prefix(),
            max_ttl: default_max_ttl(),
            redis_timeout: default_redis_timeout(),
        }
    }
}
impl Default for LogConfig {
    fn default() -> Self {
        Self { format: default_format(), level: default_level() }
    }
}

/// A configuration that cannot be used, with the field at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: at `{field}`: {reason}")]
    Parse { path: String, field: String, reason: String },
    #[error("config `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl Config {
    /// Reads `path` (if any), applies the environment, validates.
    pub fn load(path: Option<&Path>, env: &dyn Env) -> Result<Self, ConfigError> {
        let text = match path {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|source| ConfigError::Read { path: p.display().to_string(), source })?,
            None => String::new(),
        };
        let origin = path.map_or_else(|| "(defaults)".to_string(), |p| p.display().to_string());
        Self::from_yaml(&text, &origin, env)
    }

    pub fn from_yaml(text: &str, origin: &str, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut cfg: Config = crate::yaml::parse(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            field: e.field,
            reason: e.reason,
        })?;
        cfg.apply_env(env)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: &str| Err(ConfigError::Invalid { field, reason: reason.to_string() });
        if self.iam_url.is_empty() {
            return invalid("iamUrl", "required (or set IAM_URL)");
        }
        if !(self.iam_url.starts_with("http://") || self.iam_url.starts_with("https://")) {
            return invalid("iamUrl", "must start with http:// or https://");
        }
        if self.redis_url.is_empty() {
            return invalid("redisUrl", "required (or set REDIS_URL)");
        }
        let seeds = crate::backend::redis_conn::seeds(&self.redis_url);
        if !self.redis_cluster && seeds.len() > 1 {
            return invalid("redisUrl", "names several nodes: set redisCluster: true for a Redis Cluster");
        }
        if seeds.is_empty() || seeds.iter().any(|u| redis::Client::open(*u).is_err()) {
            return invalid("redisUrl", "is not a valid Redis URL (or list of them)");
        }
        if !self.jwks.path.starts_with('/') {
            return invalid("jwks.path", "must start with '/'");
        }
        for s in &self.jwt.token_sources {
            s.validate().map_err(|reason| ConfigError::Invalid { field: "jwt.tokenSources", reason })?;
        }
        for m in &self.jwt.claim_to_headers {
            m.validate().map_err(|reason| ConfigError::Invalid { field: "jwt.claimToHeaders", reason })?;
        }
        let j = &self.jwks;
        let named = [j.url.is_some(), j.discovery.is_some(), j.file.is_some(), j.inline.is_some()];
        if named.iter().filter(|n| **n).count() > 1 {
            return invalid("jwks", "name at most one of url, discovery, file, inline");
        }
        check_key_source(j, "jwks")?;
        providers::validate(&self.providers, &self.jwt.issuers)?;
        if self.jwt_secret.as_deref().is_some_and(|s| s.len() < 16) {
            return invalid("JWT_SECRET", "must be at least 16 bytes");
        }
        if self.grpc_token.as_deref().is_some_and(|s| s.len() < 32 || !s.bytes().all(|b| b.is_ascii_graphic())) {
            return invalid("SIDECAR_GRPC_TOKEN", "must be at least 32 printable ASCII characters, without spaces");
        }
        listen::check_exposure(&self.grpc_listen, self.grpc_token.is_some())
            .map_err(|reason| ConfigError::Invalid { field: "grpcListen", reason })?;
        for p in &self.public_paths {
            if !p.starts_with('/') {
                return Err(ConfigError::Invalid {
                    field: "publicPaths",
                    reason: format!("{p:?} must start with '/'"),
                });
            }
        }
        self.hmac_algorithms()?;
        self.api_keys.format.validate().map_err(|reason| ConfigError::Invalid { field: "apiKeys.format", reason })?;
        if self.api_keys.max_concurrent_introspections == 0
            || self.api_keys.introspection_rate == 0
            || self.api_keys.introspection_burst == 0
        {
            return invalid(
                "apiKeys",
                "maxConcurrentIntrospections, introspectionRate and introspectionBurst must be greater than zero",
            );
        }
        if self.failed_credentials.window.is_zero() {
            return invalid("failedCredentials.window", "must be greater than zero");
        }
        if self.policy_reload_interval.is_zero() {
            return invalid("policyReloadInterval", "must be greater than zero");
        }
        if self.control_heartbeat_interval.is_zero() {
            return invalid("controlHeartbeatInterval", "must be greater than zero");
        }
        if self.quota.lease_ttl < Duration::from_secs(1) {
            return invalid("quota.leaseTtl", "must be at least 1s");
        }
        if self.audit.queue_capacity == 0 || self.audit.batch_size == 0 {
            return invalid("audit", "queueCapacity and batchSize must be greater than zero");
        }
        if self.audit.stream.is_empty() {
            return invalid("audit.stream", "must not be empty");
        }
        Ok(())
    }

    /// The names of the configured providers (`default` first), for route rules to name.
    pub fn provider_names(&self) -> Vec<String> {
        let named = self.providers.iter().map(|p| p.name.clone());
        std::iter::once(authz_core::provider::DEFAULT.to_string()).chain(named).collect()
    }

    /// What the policy file is checked against (public paths, provider names).
    pub fn known(&self) -> policy::Known {
        policy::Known { public_paths: self.public_paths.clone(), providers: self.provider_names() }
    }

    /// The policy at start-up: the policy file, or an empty policy without one. A broken
    /// file is an error here (a start-up error); later reloads keep the last good one.
    pub fn initial_policy(&self) -> Result<Policy, PolicyError> {
        match &self.policy_file {
            Some(path) => policy::load(path, &self.known()),
            None => policy::parse("", "(no policy file)", &self.known()),
        }
    }

    /// Which client-sent headers every request loses.
    pub fn strip_rules(&self) -> StripRules {
        self.shared_settings().strip_rules()
    }

    /// The HMAC algorithms for `JWT_SECRET` tokens.
    pub fn hmac_algorithms(&self) -> Result<Vec<jsonwebtoken::Algorithm>, ConfigError> {
        self.jwt
            .hmac_algorithms
            .iter()
            .map(|a| match a.as_str() {
                "HS256" => Ok(jsonwebtoken::Algorithm::HS256),
                "HS384" => Ok(jsonwebtoken::Algorithm::HS384),
                "HS512" => Ok(jsonwebtoken::Algorithm::HS512),
                other => Err(ConfigError::Invalid {
                    field: "jwt.hmacAlgorithms",
                    reason: format!("{other:?} is not HS256, HS384 or HS512"),
                }),
            })
            .collect()
    }

    /// The Redis URL without its password, for logs.
    /// The first seed node (pub/sub and the revocation resync start there).
    pub fn first_redis_url(&self) -> &str {
        crate::backend::redis_conn::seeds(&self.redis_url).first().copied().unwrap_or(&self.redis_url)
    }

    pub fn redacted_redis_url(&self) -> String {
        crate::backend::redis_conn::seeds(&self.redis_url).into_iter().map(redact_url).collect::<Vec<_>>().join(",")
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((auth, host)) = rest.rsplit_once('@') else { return url.to_string() };
    let user = auth.split(':').next().unwrap_or("");
    format!("{scheme}://{user}:***@{host}")
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("grpc_listen", &self.grpc_listen)
            .field("admin_listen", &self.admin_listen)
            .field("iam_url", &redact_url(&self.iam_url))
            .field("redis_url", &self.redacted_redis_url())
            .field("jwt", &self.jwt)
            .field("jwks", &self.jwks)
            .field("cache", &self.cache)
            .field("public_paths", &self.public_paths)
            .field("policy_file", &self.policy_file)
            .field("strip_headers", &self.strip_headers)
            .field("jwt_secret", &self.jwt_secret.as_ref().map(|_| "***"))
            .field("grpc_token", &self.grpc_token.as_ref().map(|_| "***"))
            .finish()
    }
}

#[cfg(test)]
mod tests;
