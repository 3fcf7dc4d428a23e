//! `providers`: identity providers besides the platform's auth service (the default provider,
//! configured by `jwt` and `jwks`). Each has one issuer and its own keys; a token is matched to
//! its provider by `iss` before any key is tried (`authz_core::provider`).

use std::time::Duration;

use authz_core::duration::serde_str;
use authz_core::provider::ProviderSettings;
use serde::Deserialize;

use super::{ConfigError, JwksConfig};
use crate::credentials::keystore::KeySource;

/// One provider (`providers[]`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderConfig {
    /// Names it in route rules (`providers: [name]`), logs, audit records and metrics.
    pub name: String,
    /// The `iss` of its tokens, exactly; no two providers (nor `jwt.issuers`) share one.
    pub issuer: String,
    /// Accepted `aud` values; empty skips the audience check.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "super::keys::default_skew", with = "serde_str")]
    pub clock_skew: Duration,
    /// Refuse tokens without `exp` (default). Off: accepted, reverified every 5 minutes.
    #[serde(default = "super::keys::yes")]
    pub require_exp: bool,
    /// Where its keys come from: exactly one of `url`, `discovery`, `file`, `inline`, with
    /// `refreshInterval` and `minRefreshInterval` as for `jwks`.
    pub keys: JwksConfig,
    /// Where its tokens are read from besides `Authorization: Bearer`.
    #[serde(default)]
    pub token_sources: Vec<authz_core::credential::TokenSource>,
    /// Its claims projected onto request headers (every mapped name is stripped from clients).
    #[serde(default)]
    pub claim_to_headers: Vec<authz_core::identity::ClaimHeader>,
    /// Keep its verified tokens on requests to upstreams.
    #[serde(default)]
    pub forward_credential: bool,
    /// The claim naming the calling service (`X-Internal-Service`, `serviceOnly` rules): a
    /// name or a JSON pointer (`/kubernetes.io/serviceaccount/name`). Unset: its tokens name
    /// no service (their `svc` claim is never read).
    #[serde(default)]
    pub service_claim: Option<String>,
}

impl ProviderConfig {
    pub fn settings(&self) -> ProviderSettings {
        ProviderSettings {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            audiences: self.audiences.clone(),
            clock_skew_secs: self.clock_skew.as_secs(),
            require_exp: self.require_exp,
            token_sources: self.token_sources.clone(),
            claim_to_headers: self.claim_to_headers.clone(),
            forward_credential: self.forward_credential,
            service_claim: self.service_claim.clone(),
        }
    }

    /// Where its keys come from (validated: exactly one source is named).
    pub fn key_source(&self) -> KeySource {
        let k = &self.keys;
        match (&k.url, &k.discovery, &k.file, &k.inline) {
            (Some(u), ..) => KeySource::Url(u.clone()),
            (None, Some(issuer), ..) => KeySource::Discovery(issuer.clone()),
            (None, None, Some(f), _) => KeySource::File(f.clone()),
            (None, None, None, Some(doc)) => KeySource::Inline(doc.to_string()),
            (None, None, None, None) => KeySource::Inline(String::new()),
        }
    }
}

/// Checks every provider, and that a token's `iss` names at most one of them.
pub(super) fn validate(providers: &[ProviderConfig], default_issuers: &[String]) -> Result<(), ConfigError> {
    let invalid = |reason: String| Err(ConfigError::Invalid { field: "providers", reason });
    for (i, p) in providers.iter().enumerate() {
        let name = &p.name;
        let token = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_".contains(&b));
        if !token {
            return invalid(format!("name {name:?}: lower-case letters, digits, '-' and '_' (at most 64)"));
        }
        if name == authz_core::provider::DEFAULT {
            return invalid(format!("{name:?} is the name of the provider `jwt` and `jwks` configure"));
        }
        if providers[..i].iter().any(|o| o.name == *name) {
            return invalid(format!("{name:?} is listed twice"));
        }
        if p.issuer.is_empty() {
            return invalid(format!("{name}: issuer is required"));
        }
        if providers[..i].iter().any(|o| o.issuer == p.issuer) || default_issuers.contains(&p.issuer) {
            return invalid(format!("{name}: issuer {:?} is another provider's too", p.issuer));
        }
        let k = &p.keys;
        let named = [k.url.is_some(), k.discovery.is_some(), k.file.is_some(), k.inline.is_some()];
        if named.iter().filter(|n| **n).count() != 1 {
            return invalid(format!("{name}: keys must name exactly one of url, discovery, file, inline"));
        }
        super::keys::check_key_source(k, "providers[].keys")?;
        if p.service_claim.as_deref().is_some_and(str::is_empty) {
            return invalid(format!("{name}: serviceClaim must name a claim"));
        }
        for s in &p.token_sources {
            s.validate().map_err(|reason| ConfigError::Invalid { field: "providers[].tokenSources", reason })?;
        }
        for m in &p.claim_to_headers {
            m.validate().map_err(|reason| ConfigError::Invalid { field: "providers[].claimToHeaders", reason })?;
        }
    }
    Ok(())
}
