//! Identity providers: which issuer a token claims decides which keys, claim rules, token
//! sources, header mappings and forwarding apply to it.
//!
//! The default provider is the platform's auth service (the sidecar's `jwt` and `jwks`
//! sections). Others are listed under `providers` (a partner's identity provider, the
//! cluster's service-account issuer), each with exactly one issuer. A token is matched to its
//! provider by its unverified `iss` before any key is tried, so one provider's keys never
//! verify another provider's tokens; a token whose `iss` names no listed provider belongs to
//! the default one (whose `issuers` then decide). Route rules name the providers they accept
//! (`providers`); a rule that names none accepts the default provider only, so adding a
//! provider opens no route by itself.

use serde::{Deserialize, Serialize};

use crate::claims::{Claims, ClaimsPolicy, Scope};
use crate::credential::TokenSource;
use crate::identity::{ClaimHeader, Identity};
use crate::settings::SharedSettings;
use crate::token::TokenError;

/// The name of the default provider (in route rules, audit records and metrics).
pub const DEFAULT: &str = "default";

fn sixty() -> u64 {
    60
}
fn yes() -> bool {
    true
}

/// A provider besides the default one, as configured and as pushed to the filters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderSettings {
    /// Names the provider in route rules (`providers`), logs, audit records and metrics.
    pub name: String,
    /// The `iss` its tokens carry, exactly.
    pub issuer: String,
    /// Accepted `aud` values (one match suffices); empty skips the check.
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default = "sixty")]
    pub clock_skew_secs: u64,
    /// Tokens without `exp` are refused (the default); off, they are accepted and cached for
    /// at most [`NO_EXP_CACHE_SECS`].
    #[serde(default = "yes")]
    pub require_exp: bool,
    /// Where its tokens are read from besides `Authorization: Bearer`.
    #[serde(default)]
    pub token_sources: Vec<TokenSource>,
    /// Its claims projected onto request headers.
    #[serde(default)]
    pub claim_to_headers: Vec<ClaimHeader>,
    /// Keep its verified tokens on requests to upstreams.
    #[serde(default)]
    pub forward_credential: bool,
    /// The claim naming the calling service (`X-Internal-Service`, `serviceOnly` rules): a
    /// name, or a JSON pointer into the claims (`/kubernetes.io/serviceaccount/name`). Its
    /// tokens' `svc` claim is never read: another issuer must not name our services.
    #[serde(default)]
    pub service_claim: Option<String>,
}

/// How long a verified identity without `exp` is reused before the token is verified again.
pub const NO_EXP_CACHE_SECS: u64 = 300;

/// One provider as the deciders use it.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    pub name: String,
    /// `None` for the default provider (any `iss` no other provider claims).
    pub issuer: Option<String>,
    pub claims: ClaimsPolicy,
    /// The issuers and audiences its tokens must carry (a route may name its own).
    pub scope: Scope,
    pub token_sources: Vec<TokenSource>,
    pub claim_headers: Vec<ClaimHeader>,
    pub forward_credential: bool,
    /// For providers other than the default: where the calling service's name is read
    /// (`None`: their tokens name no service).
    pub service_claim: Option<String>,
}

impl Provider {
    /// Whether it reads tokens from `source` (`None`: `Authorization: Bearer`, read for all).
    pub fn reads(&self, source: Option<&TokenSource>) -> bool {
        source.is_none_or(|s| self.token_sources.contains(s))
    }
}

/// Every provider, the default one first.
#[derive(Debug, Clone, PartialEq)]
pub struct Providers {
    default: Provider,
    /// The others, in configuration order (index `i` is `others[i - 1]`).
    others: Vec<Provider>,
    /// Every provider's token sources, each once, in order: where a request's bearer token is
    /// looked for before its `iss` is known.
    sources: Vec<TokenSource>,
}

impl Default for Providers {
    fn default() -> Self {
        Self::single(ClaimsPolicy::default())
    }
}

impl Providers {
    /// The default provider alone, with `claims`.
    pub fn single(claims: ClaimsPolicy) -> Self {
        Self::from_settings(&SharedSettings {
            issuers: claims.issuers,
            audiences: claims.audiences,
            clock_skew_secs: claims.clock_skew_secs,
            require_exp: claims.require_exp,
            ..SharedSettings::default()
        })
    }

    pub fn from_settings(s: &SharedSettings) -> Self {
        let default = Provider {
            name: DEFAULT.into(),
            issuer: None,
            scope: s.claims().scope(),
            claims: s.claims(),
            token_sources: s.token_sources.clone(),
            claim_headers: s.claim_to_headers.clone(),
            forward_credential: s.forward_credential,
            service_claim: None,
        };
        let others: Vec<Provider> = s
            .providers
            .iter()
            .map(|p| {
                let claims = ClaimsPolicy {
                    issuers: vec![p.issuer.clone()],
                    audiences: p.audiences.clone(),
                    clock_skew_secs: p.clock_skew_secs,
                    require_exp: p.require_exp,
                };
                Provider {
                    name: p.name.clone(),
                    issuer: Some(p.issuer.clone()),
                    scope: claims.scope(),
                    claims,
                    token_sources: p.token_sources.clone(),
                    claim_headers: p.claim_to_headers.clone(),
                    forward_credential: p.forward_credential,
                    service_claim: p.service_claim.clone(),
                }
            })
            .collect();
        let mut sources: Vec<TokenSource> = Vec::new();
        for s in std::iter::once(&default).chain(&others).flat_map(|p| &p.token_sources) {
            if !sources.contains(s) {
                sources.push(s.clone());
            }
        }
        Self { default, others, sources }
    }

    pub fn default_provider(&self) -> &Provider {
        &self.default
    }

    /// The provider an identity names (`None`: the default one).
    pub fn get(&self, name: Option<&str>) -> Option<&Provider> {
        match name {
            None => Some(self.default_provider()),
            Some(n) => self.iter().find(|p| p.name == n),
        }
    }

    /// Provider `i` ([`Providers::select`]): 0 is the default one, as is any index past the end.
    pub fn nth(&self, i: usize) -> &Provider {
        i.checked_sub(1).and_then(|j| self.others.get(j)).unwrap_or(&self.default)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Provider> {
        std::iter::once(&self.default).chain(&self.others)
    }

    /// Whether providers other than the default are configured.
    pub fn several(&self) -> bool {
        !self.others.is_empty()
    }

    /// The index of the provider `token` belongs to, by its unverified `iss` (0: default).
    pub fn select(&self, token: &str) -> usize {
        if !self.several() {
            return 0;
        }
        let Some(iss) = issuer_of(token) else { return 0 };
        self.others.iter().position(|p| p.issuer.as_deref() == Some(iss.as_str())).map_or(0, |j| j + 1)
    }

    /// The identity of `claims`, verified with provider `i`'s keys and rules at `now`.
    pub fn identity(&self, i: usize, claims: Claims, now: u64) -> Result<Identity, TokenError> {
        let no_exp = claims.exp.is_none();
        let mut id = Identity::from_claims(claims)?;
        if no_exp {
            // Only a provider with `requireExp: false` lets one through: reverified now and then.
            id.expires_at = now.saturating_add(NO_EXP_CACHE_SECS);
        }
        if i > 0 {
            let p = self.nth(i);
            id.provider = Some(p.name.clone());
            id.service = match &p.service_claim {
                None => None,
                Some(claim) => match id.claim(claim).map(std::borrow::Cow::into_owned) {
                    Some(serde_json::Value::String(s)) if crate::headers::is_safe_value(&s, false) => Some(s),
                    Some(_) => return Err(TokenError::BadClaim("service")),
                    None => None,
                },
            };
        }
        Ok(id)
    }

    /// Where bearer tokens are looked for besides `Authorization`, in order.
    pub fn token_sources(&self) -> &[TokenSource] {
        &self.sources
    }

    /// The claim-to-header mappings of every provider (all their names are stripped).
    pub fn mapped_headers(&self) -> impl Iterator<Item = &ClaimHeader> {
        self.iter().flat_map(|p| &p.claim_headers)
    }
}

/// The `iss` of a token's payload, unverified: only to choose the keys that verify it.
pub fn issuer_of(token: &str) -> Option<String> {
    use base64::Engine as _;
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(payload: &str) -> String {
        use base64::Engine as _;
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!("{}.{}.sig", e(r#"{"alg":"RS256"}"#), e(payload))
    }

    fn two() -> Providers {
        Providers::from_settings(&SharedSettings {
            issuers: vec!["https://iam".into()],
            token_sources: vec![TokenSource { cookie: Some("session".into()), header: None, prefix: None }],
            providers: vec![ProviderSettings {
                name: "kubernetes".into(),
                issuer: "https://kubernetes.default.svc".into(),
                audiences: vec!["gateway".into()],
                clock_skew_secs: 5,
                require_exp: true,
                token_sources: vec![
                    TokenSource { cookie: Some("session".into()), header: None, prefix: None },
                    TokenSource { cookie: None, header: Some("x-sa-token".into()), prefix: None },
                ],
                claim_to_headers: vec![],
                forward_credential: true,
                service_claim: Some("svc_name".into()),
            }],
            ..SharedSettings::default()
        })
    }

    #[test]
    fn a_token_goes_to_the_provider_its_issuer_names() {
        let p = two();
        assert_eq!(p.select(&token(r#"{"iss":"https://kubernetes.default.svc","sub":"x"}"#)), 1);
        assert_eq!(p.select(&token(r#"{"iss":"https://iam"}"#)), 0);
        assert_eq!(p.select(&token(r#"{"iss":"https://elsewhere"}"#)), 0, "unknown issuers: the default decides");
        assert_eq!(p.select(&token(r#"{"sub":"x"}"#)), 0);
        assert_eq!(p.select("garbage"), 0);
        assert_eq!(p.nth(1).scope.issuers, vec!["https://kubernetes.default.svc".to_string()]);
        assert!(p.get(Some("kubernetes")).is_some_and(|k| k.forward_credential));
        assert!(p.get(Some("nope")).is_none());
    }

    #[test]
    fn another_providers_tokens_name_a_service_only_through_its_service_claim() {
        let p = two();
        let claims = |v: serde_json::Value| serde_json::from_value::<Claims>(v).unwrap();
        let k8s = claims(serde_json::json!({"sub": "s", "exp": 10, "svc": "billing", "svc_name": "tes"}));
        let id = p.identity(1, k8s, 0).unwrap();
        assert_eq!((id.service.as_deref(), id.provider.as_deref()), (Some("tes"), Some("kubernetes")));
        let forged = claims(serde_json::json!({"sub": "s", "exp": 10, "svc": "billing"}));
        assert_eq!(p.identity(1, forged, 0).unwrap().service, None, "its `svc` claim is not read");
        let ours = claims(serde_json::json!({"sub": "s", "exp": 10, "svc": "billing"}));
        assert_eq!(p.identity(0, ours, 0).unwrap().service.as_deref(), Some("billing"));
        let bad = claims(serde_json::json!({"sub": "s", "exp": 10, "svc_name": ["a"]}));
        assert_eq!(p.identity(1, bad, 0), Err(TokenError::BadClaim("service")));
        let no_exp = claims(serde_json::json!({"sub": "s"}));
        assert_eq!(p.identity(1, no_exp, 100).unwrap().expires_at, 100 + NO_EXP_CACHE_SECS);
    }

    #[test]
    fn token_sources_are_read_once_and_each_provider_takes_only_its_own() {
        let p = two();
        assert_eq!(p.token_sources().len(), 2, "the shared cookie once");
        let header = &p.token_sources()[1];
        assert!(p.nth(1).reads(Some(header)) && !p.nth(0).reads(Some(header)));
        assert!(p.nth(0).reads(None) && p.nth(1).reads(None));
    }
}
