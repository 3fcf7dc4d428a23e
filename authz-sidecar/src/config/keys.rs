//! The default identity provider's sections: `jwt` (claim rules, HMAC algorithms, forwarding,
//! claims to headers, token sources) and `jwks` (where its keys come from), and the checks a
//! key source gets (shared with `providers[].keys`).

use std::time::Duration;

use authz_core::duration::serde_str;
use serde::Deserialize;

use super::ConfigError;

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtConfig {
    /// Accepted `iss` values; empty accepts any issuer.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Accepted `aud` values; empty skips the audience check.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "default_skew", with = "serde_str")]
    pub clock_skew: Duration,
    /// Refuse tokens without `exp` (default). Off: accepted, reverified every 5 minutes.
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Algorithms accepted for kid-less tokens signed with `JWT_SECRET`.
    #[serde(default = "default_hmac")]
    pub hmac_algorithms: Vec<String>,
    /// Keep verified bearer tokens on requests to upstreams (off: removed, as Envoy's
    /// `jwt_authn` does without `forward: true`); a route may ask for it alone.
    #[serde(default)]
    pub forward_credential: bool,
    /// Claims projected onto request headers for the upstream (`[{claim, header}]`); every
    /// mapped name is stripped from client requests.
    #[serde(default)]
    pub claim_to_headers: Vec<authz_core::identity::ClaimHeader>,
    /// Where else bearer tokens are read from, in order, when a request carries neither
    /// `Authorization` nor `X-API-Key`: `[{cookie: name}]`, `[{header: name, prefix: "Token "}]`.
    #[serde(default)]
    pub token_sources: Vec<authz_core::credential::TokenSource>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwksConfig {
    /// Path of the JWKS document under `iamUrl` (when no other source is named).
    #[serde(default = "default_jwks_path")]
    pub path: String,
    /// The JWKS at this absolute URL instead.
    #[serde(default)]
    pub url: Option<String>,
    /// OpenID Connect discovery: the issuer whose `/.well-known/openid-configuration` names
    /// the JWKS (`jwks_uri`); its `issuer` must be this value exactly.
    #[serde(default)]
    pub discovery: Option<String>,
    /// A JWKS file, re-read when it changes (checked every `refreshInterval`).
    #[serde(default)]
    pub file: Option<std::path::PathBuf>,
    /// The JWKS document itself (`{keys: [...]}`).
    #[serde(default)]
    pub inline: Option<serde_json::Value>,
    /// Background refresh period.
    #[serde(default = "default_refresh", with = "serde_str")]
    pub refresh_interval: Duration,
    /// Minimum time between two fetches triggered by unknown `kid`s (flood protection).
    #[serde(default = "default_min_refresh", with = "serde_str")]
    pub min_refresh_interval: Duration,
}

pub(super) fn yes() -> bool {
    true
}
fn default_hmac() -> Vec<String> {
    vec!["HS256".into()]
}
pub(super) fn default_skew() -> Duration {
    Duration::from_secs(60)
}
fn default_jwks_path() -> String {
    "/.well-known/jwks.json".into()
}
fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_min_refresh() -> Duration {
    Duration::from_secs(10)
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew: default_skew(),
            require_exp: true,
            hmac_algorithms: default_hmac(),
            forward_credential: false,
            claim_to_headers: Vec::new(),
            token_sources: Vec::new(),
        }
    }
}
impl Default for JwksConfig {
    fn default() -> Self {
        Self {
            path: default_jwks_path(),
            url: None,
            discovery: None,
            file: None,
            inline: None,
            refresh_interval: default_refresh(),
            min_refresh_interval: default_min_refresh(),
        }
    }
}
/// The URLs, inline document and refresh interval of a key source (`jwks`, or a provider's
/// `keys`).
pub(super) fn check_key_source(j: &JwksConfig, section: &'static str) -> Result<(), ConfigError> {
    let invalid = |reason: String| Err(ConfigError::Invalid { field: section, reason });
    for (field, url) in [("url", &j.url), ("discovery", &j.discovery)] {
        if url.as_deref().is_some_and(|u| !(u.starts_with("https://") || u.starts_with("http://"))) {
            return invalid(format!("{field} must be an http(s) URL"));
        }
    }
    if let Some(doc) = &j.inline {
        let mut keys = authz_core::KeySet::new();
        if let Err(e) = keys.extend_from_jwks_json(&doc.to_string(), authz_core::keys::Source::Local) {
            return invalid(format!("inline: {e}"));
        }
    }
    if j.refresh_interval.is_zero() {
        return invalid("refreshInterval must be greater than zero".into());
    }
    Ok(())
}
