//! What the rest of the sidecar derives from the configuration: where the keys come from, and
//! the settings every decider shares (pushed to the filters with the policy).

use super::{Config, ProviderConfig};

impl Config {
    /// Where the keys come from (`jwks`).
    pub fn key_source(&self) -> crate::credentials::keystore::KeySource {
        use crate::credentials::keystore::KeySource;
        let j = &self.jwks;
        if let Some(u) = &j.url {
            KeySource::Url(u.clone())
        } else if let Some(issuer) = &j.discovery {
            KeySource::Discovery(issuer.clone())
        } else if let Some(f) = &j.file {
            KeySource::File(f.clone())
        } else if let Some(doc) = &j.inline {
            KeySource::Inline(doc.to_string())
        } else {
            KeySource::Url(format!("{}{}", self.iam_url.trim_end_matches('/'), j.path))
        }
    }

    /// What the filters must decide with too (pushed with the policy).
    pub fn shared_settings(&self) -> authz_core::settings::SharedSettings {
        authz_core::settings::SharedSettings {
            issuers: self.jwt.issuers.clone(),
            audiences: self.jwt.audiences.clone(),
            clock_skew_secs: self.jwt.clock_skew.as_secs(),
            public_paths: self.public_paths.clone(),
            strip_headers: self.strip_headers.clone(),
            override_headers: self.override_headers.clone(),
            tenant_claim: self.tenant_claim.clone(),
            api_key_format: self.api_keys.format.clone(),
            forward_credential: self.jwt.forward_credential,
            claim_to_headers: self.jwt.claim_to_headers.clone(),
            token_sources: self.jwt.token_sources.clone(),
            require_exp: self.jwt.require_exp,
            providers: self.providers.iter().map(ProviderConfig::settings).collect(),
        }
    }
}
