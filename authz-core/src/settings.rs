//! The settings every decider of a request must share, configured once (in the sidecar) and
//! pushed to each filter with the route policy (`authz.v1.PolicySnapshot.settings_json`), so
//! the filter and the sidecar cannot be configured to decide differently.

use serde::{Deserialize, Serialize};

use crate::api_key_format::ApiKeyFormat;
use crate::claims::ClaimsPolicy;
use crate::credential::TokenSource;
use crate::headers::StripRules;
use crate::identity::ClaimHeader;
use crate::provider::ProviderSettings;

/// Issuers, audiences, clock skew, public paths, stripped headers, the tenant claim and the
/// API-key shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedSettings {
    /// Accepted `iss` values; empty accepts any.
    pub issuers: Vec<String>,
    /// Accepted `aud` values (one match suffices); empty skips the check.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    pub clock_skew_secs: u64,
    /// Paths (without query) that need no credential.
    pub public_paths: Vec<String>,
    /// Extra header names removed from every request.
    pub strip_headers: Vec<String>,
    /// Method, URL and foreign identity override headers removed; `None`: the built-in list.
    pub override_headers: Option<Vec<String>>,
    /// The claim naming the caller's lab or tenant.
    pub tenant_claim: String,
    /// The shape of the platform's API keys.
    pub api_key_format: ApiKeyFormat,
    /// Keep verified bearer tokens on requests to upstreams (routes may ask for it alone).
    #[serde(default)]
    pub forward_credential: bool,
    /// Claims projected onto request headers (`claimToHeaders`).
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimHeader>,
    /// Where else bearer tokens are read from (`tokenSources`: cookies, other headers).
    #[serde(default)]
    pub token_sources: Vec<TokenSource>,
    /// Tokens of the default provider without `exp` are refused (`jwt.requireExp`).
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// The identity providers besides the default one (`providers`).
    #[serde(default)]
    pub providers: Vec<ProviderSettings>,
}

fn yes() -> bool {
    true
}

impl Default for SharedSettings {
    fn default() -> Self {
        Self {
            issuers: Vec::new(),
            audiences: Vec::new(),
            clock_skew_secs: 60,
            public_paths: Vec::new(),
            strip_headers: Vec::new(),
            override_headers: None,
            tenant_claim: "tenant".into(),
            api_key_format: ApiKeyFormat::default(),
            forward_credential: false,
            claim_to_headers: Vec::new(),
            token_sources: Vec::new(),
            require_exp: true,
            providers: Vec::new(),
        }
    }
}

impl SharedSettings {
    pub fn claims(&self) -> ClaimsPolicy {
        ClaimsPolicy {
            issuers: self.issuers.clone(),
            audiences: self.audiences.clone(),
            clock_skew_secs: self.clock_skew_secs,
            require_exp: self.require_exp,
        }
    }

    /// The stripped headers: the configured ones and every `claimToHeaders` name of every
    /// provider (a client must not be able to supply a mapped header).
    pub fn strip_rules(&self) -> StripRules {
        let mut extra = self.strip_headers.clone();
        let mapped = self.claim_to_headers.iter().chain(self.providers.iter().flat_map(|p| &p.claim_to_headers));
        extra.extend(mapped.map(|m| m.header.clone()));
        StripRules::configured(extra, self.override_headers.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_as_json() {
        let s = SharedSettings { issuers: vec!["https://a".into()], clock_skew_secs: 5, ..Default::default() };
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SharedSettings>(&json).unwrap(), s);
        assert!(serde_json::from_str::<SharedSettings>(r#"{"issuers": []}"#).is_err(), "every field is sent");
    }
}
