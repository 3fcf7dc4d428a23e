//! Local authentication: the verified-token cache in front of signature verification.
//!
//! This is the hot path of the filter. A hit costs one keyed hash and one map lookup; a miss
//! verifies with the keys held locally; a token whose key we do not hold is handed back to the
//! caller ([`LocalVerdict::Unknown`]) to ask the sidecar, which can fetch keys.

use std::collections::HashMap;
use std::sync::Arc;

use crate::cache::{Fingerprint, TokenCache};
use crate::claims::ClaimsPolicy;
use crate::headers::{X_INTERNAL_SERVICE, X_USER_EMAIL, X_USER_ID, X_USER_ROLES};
use crate::identity::Identity;
use crate::keys::KeySet;
use crate::provider::Providers;
use crate::token::{NativeVerifier, TokenError, kid_of, verify_token_time_with};

/// A verified identity and what is derived from it once per token. The identity headers are
/// read from the identity itself when a request is forwarded: only what needs computing is kept
/// (several roles joined, mapped claims), so a cached token costs its identity and little more.
#[derive(Debug)]
pub struct Verified {
    /// Shared with the sidecar's identity cache (the filter holds the only reference).
    pub identity: Arc<Identity>,
    /// `X-User-Roles` of several roles (see [`Identity::joined_roles`]).
    joined_roles: Option<Box<str>>,
    /// Claims projected onto headers (`claimToHeaders`): (header, value); empty, and no
    /// allocation, unless the provider maps claims.
    mapped: Vec<(String, String)>,
    /// The token's [`crate::cache::fingerprint`], for audit events (computed once, on a miss).
    pub fingerprint: Fingerprint,
}

impl Verified {
    pub fn new(identity: Identity, token: &str) -> Self {
        Self::shared(Arc::new(identity), token)
    }

    /// `token` is the credential (a bearer token or an API key) the identity was found for.
    pub fn shared(identity: Arc<Identity>, token: &str) -> Self {
        Self::mapped(identity, token, &[])
    }

    /// With the claims of `mapped` projected onto their headers too.
    pub fn mapped(identity: Arc<Identity>, token: &str, mapped: &[crate::identity::ClaimHeader]) -> Self {
        let mapped = mapped.iter().filter_map(|m| m.value(&identity).map(|v| (m.header.clone(), v))).collect();
        Self { joined_roles: identity.joined_roles(), identity, mapped, fingerprint: Fingerprint::of(token) }
    }

    /// The identity headers set on a forwarded request: `X-User-Id`, then `X-User-Email`,
    /// `X-User-Roles` (comma-joined) and `X-Internal-Service` when the identity has them, then
    /// the mapped claims.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        let id = &*self.identity;
        let roles = match (&self.joined_roles, id.roles.as_slice()) {
            (Some(joined), _) => Some(&**joined),
            (None, [one]) => Some(one.as_str()),
            (None, _) => None,
        };
        std::iter::once((X_USER_ID, id.user_id.as_str()))
            .chain(id.email.as_deref().map(|e| (X_USER_EMAIL, e)))
            .chain(roles.map(|r| (X_USER_ROLES, r)))
            .chain(id.service.as_deref().map(|s| (X_INTERNAL_SERVICE, s)))
            .chain(self.mapped.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    }
}

/// The outcome of trying to authenticate a bearer token locally.
#[derive(Debug)]
pub enum LocalVerdict {
    Valid {
        verified: Arc<Verified>,
        cache_hit: bool,
    },
    Invalid(TokenError),
    /// We hold no key for this token: only the sidecar can decide.
    Unknown,
}

/// Keys, claim rules and the cache, owned by one filter VM (or one sidecar task).
pub struct Authenticator {
    /// The default provider's keys.
    keys: KeySet,
    /// Every other provider's keys, by provider name (kept even before the settings naming
    /// the provider arrive, since the control stream sends keys first).
    provider_keys: HashMap<String, KeySet>,
    providers: Providers,
    cache: TokenCache<Arc<Verified>>,
    native: Option<Box<dyn NativeVerifier>>,
    /// `kid`s the sidecar found unknown even after refreshing its keys (`""`: no `kid`), per
    /// provider, with when: refused here until the keys change or [`REFUSED_KID_SECS`] pass,
    /// so a flood of them costs no callout each, while a key published later is still asked for.
    refused_kids: HashMap<(usize, String), u64>,
    /// The keys of a provider none were received for yet.
    no_keys: KeySet,
    /// The extra claims a cached identity keeps (sorted), when the host knows what its policy
    /// reads (the filter); `None` keeps every claim (the sidecar: Rego may read any).
    kept_claims: Option<Vec<String>>,
}

/// How long a refused `kid` is refused locally without asking the sidecar again (the
/// sidecar's own unknown-`kid` refetch is at most one per `minRefreshInterval`, 10 s).
pub const REFUSED_KID_SECS: u64 = 10;

/// At most this many refused `kid`s are remembered; past it the set starts again (a flood of
/// distinct random `kid`s then costs one callout per `kid`, which the sidecar bounds).
const MAX_REFUSED_KIDS: usize = 4096;

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").field("keys", &self.keys).field("cached", &self.cache.len()).finish()
    }
}

impl Authenticator {
    pub fn new(policy: ClaimsPolicy, cache_capacity: usize) -> Self {
        Self {
            keys: KeySet::new(),
            provider_keys: HashMap::new(),
            providers: Providers::single(policy),
            cache: TokenCache::new(cache_capacity),
            native: None,
            refused_kids: HashMap::new(),
            no_keys: KeySet::new(),
            kept_claims: None,
        }
    }

    /// Uses the host's native signature verification where it applies (RSA, ECDSA).
    pub fn set_native_verifier(&mut self, native: Box<dyn NativeVerifier>) {
        self.native = Some(native);
    }

    /// Replaces the default provider's key set. Cached identities stay valid (they were
    /// verified with keys that were trusted then); revocation is handled by its own set.
    pub fn set_keys(&mut self, keys: KeySet) {
        self.refused_kids.clear();
        self.keys = keys;
    }

    /// Replaces the key set of provider `name` (the default one for [`crate::provider::DEFAULT`]).
    pub fn set_provider_keys(&mut self, name: &str, keys: KeySet) {
        if name.is_empty() || name == crate::provider::DEFAULT {
            return self.set_keys(keys);
        }
        self.refused_kids.clear();
        self.provider_keys.insert(name.to_string(), keys);
    }

    /// Keeps only these extra claims (sorted) in identities cached from now on, plus what the
    /// typed fields hold. A change empties the cache: identities cached under the old set may
    /// lack a claim the new policy reads.
    pub fn keep_only_claims(&mut self, names: Option<Vec<String>>) {
        if names != self.kept_claims {
            self.kept_claims = names;
            self.cache.clear();
        }
    }

    /// The extra claims cached identities keep (`None`: all).
    pub fn kept_claims(&self) -> Option<&[String]> {
        self.kept_claims.as_deref()
    }

    /// Replaces the providers (the settings pushed by the sidecar). Cached identities carry
    /// their provider's headers and were matched by its issuer, so a change empties the cache;
    /// the same settings again (every policy reload sends them) keep it.
    pub fn set_providers(&mut self, providers: Providers) {
        if providers != self.providers {
            self.providers = providers;
            self.cache.clear();
            self.refused_kids.clear();
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    /// The keys of provider `i` (see [`Providers::index`]).
    fn keys_of(&self, i: usize) -> &KeySet {
        if i == 0 {
            return &self.keys;
        }
        self.provider_keys.get(&self.providers.nth(i).name).unwrap_or(&self.no_keys)
    }

    /// The default issuers and audiences.
    pub fn policy(&self) -> &ClaimsPolicy {
        &self.providers.default_provider().claims
    }

    pub fn providers(&self) -> &Providers {
        &self.providers
    }

    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The sidecar refused `token` as `token_unknown_key` after refreshing its keys: its `kid`
    /// is refused locally until the keys change ([`Authenticator::set_keys`]).
    pub fn remember_unknown_kid(&mut self, token: &str, now: u64) {
        if self.refused_kids.len() >= MAX_REFUSED_KIDS {
            self.refused_kids.clear();
        }
        let provider = self.providers.select(token);
        self.refused_kids.insert((provider, kid_of(token).unwrap_or_default()), now);
    }

    pub fn authenticate(&mut self, token: &str, now: u64) -> LocalVerdict {
        let key = self.cache.key(token);
        if let Some(v) = self.cache.get(&key, now) {
            // A token verified by a key that has since been retired is verified again (and
            // refused): retiring a key must end its tokens at once.
            // (Its provider is configured: a change of providers empties the cache.)
            let keys = match v.identity.provider.as_deref() {
                None => Some(&self.keys),
                Some(name) => self.provider_keys.get(name),
            };
            if keys.is_some_and(|keys| v.identity.key_id.as_deref().is_none_or(|kid| keys.has_kid(kid))) {
                return LocalVerdict::Valid { verified: Arc::clone(v), cache_hit: true };
            }
            self.cache.remove(&key);
        }
        // The provider by the token's `iss`, before any key is tried: one provider's keys
        // never verify another's tokens. Issuer and audience are the route's business
        // (`Route::check`), so one cached verification serves every route.
        let i = self.providers.select(token);
        let provider = self.providers.nth(i);
        match verify_token_time_with(token, self.keys_of(i), &provider.claims, now, self.native.as_deref()) {
            Ok(claims) => match self.providers.identity(i, claims, now) {
                Ok(identity) => {
                    let exp = identity.expires_at;
                    let mapped = &self.providers.nth(i).claim_headers;
                    // Mapped claims are projected before unread claims are dropped.
                    let mut verified = Verified::mapped(Arc::new(identity), token, mapped);
                    if let Some(keep) = &self.kept_claims
                        && let Some(id) = Arc::get_mut(&mut verified.identity)
                    {
                        id.keep_claims(keep);
                    }
                    let verified = Arc::new(verified);
                    self.cache.insert(key, Arc::clone(&verified), exp, now);
                    LocalVerdict::Valid { verified, cache_hit: false }
                }
                Err(e) => LocalVerdict::Invalid(e),
            },
            Err(TokenError::UnknownKey)
                if self
                    .refused_kids
                    .get(&(i, kid_of(token).unwrap_or_default()))
                    .is_some_and(|at| now < at.saturating_add(REFUSED_KID_SECS)) =>
            {
                LocalVerdict::Invalid(TokenError::UnknownKey)
            }
            Err(TokenError::UnknownKey) => LocalVerdict::Unknown,
            Err(e) => LocalVerdict::Invalid(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    /// An authenticator holding the HMAC secret `k` (HS256), caching 16 tokens.
    fn hmac_authenticator() -> Authenticator {
        let mut ks = KeySet::new();
        ks.add_hmac_secret(b"k", Algorithm::HS256);
        let mut a = Authenticator::new(ClaimsPolicy::default(), 16);
        a.set_keys(ks);
        a
    }

    #[test]
    fn a_kid_the_sidecar_refused_is_refused_locally_until_the_keys_change() {
        let now = 1_700_000_000;
        let mut a = Authenticator::new(ClaimsPolicy::default(), 16);
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("random-kid".into());
        let t = encode(&h, &json!({"sub": "u", "exp": now + 100}), &EncodingKey::from_secret(b"k")).unwrap();
        assert!(matches!(a.authenticate(&t, now), LocalVerdict::Unknown));
        a.remember_unknown_kid(&t, now);
        assert!(matches!(a.authenticate(&t, now), LocalVerdict::Invalid(TokenError::UnknownKey)));
        assert!(matches!(a.authenticate(&t, now + REFUSED_KID_SECS), LocalVerdict::Unknown));
        a.remember_unknown_kid(&t, now);
        a.set_keys(KeySet::new());
        assert!(matches!(a.authenticate(&t, now), LocalVerdict::Unknown));
    }

    /// With the claims its policy reads named, a cache keeps only those (and the typed fields);
    /// a different set empties it, so no identity lacks a claim the new policy reads.
    #[test]
    fn cached_identities_keep_only_the_claims_named() {
        let now = 1_700_000_000;
        let mut a = hmac_authenticator();
        let claims =
            json!({"sub": "u", "exp": now + 100, "labs": ["l1"], "tier": "gold", "realm_access": {"roles": []}});
        let t = encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(b"k")).unwrap();
        let names = |v: &LocalVerdict| match v {
            LocalVerdict::Valid { verified, .. } => verified.identity.claims.iter().map(|(k, _)| k.clone()).collect(),
            _ => Vec::new(),
        };
        assert_eq!(names(&a.authenticate(&t, now)), ["labs", "realm_access", "tier"], "no set named: every claim");
        a.keep_only_claims(Some(vec!["labs".into()]));
        assert_eq!(a.cached(), 0, "a new set empties the cache");
        let first = a.authenticate(&t, now);
        assert!(matches!(first, LocalVerdict::Valid { cache_hit: false, .. }));
        assert_eq!(names(&first), ["labs"]);
        assert!(matches!(a.authenticate(&t, now), LocalVerdict::Valid { cache_hit: true, .. }));
        a.keep_only_claims(Some(vec!["labs".into()]));
        assert_eq!(a.cached(), 1, "the same set keeps the cache");
    }

    #[test]
    fn caches_valid_tokens_only_and_defers_unknown_keys() {
        let now = 1_700_000_000;
        let mut a = hmac_authenticator();
        let sign =
            |c: serde_json::Value| encode(&Header::new(Algorithm::HS256), &c, &EncodingKey::from_secret(b"k")).unwrap();
        let good = sign(json!({"sub": "u", "exp": now + 100}));
        assert!(matches!(a.authenticate(&good, now), LocalVerdict::Valid { cache_hit: false, .. }));
        assert!(matches!(a.authenticate(&good, now), LocalVerdict::Valid { cache_hit: true, .. }));
        // A cached identity never outlives its token: at `exp` the entry is gone and the token
        // is verified afresh (still inside the clock-skew window), and refused after it.
        assert!(matches!(a.authenticate(&good, now + 100), LocalVerdict::Valid { cache_hit: false, .. }));
        assert!(matches!(a.authenticate(&good, now + 161), LocalVerdict::Invalid(TokenError::Expired)));
        let expired = sign(json!({"sub": "u", "exp": now - 100}));
        assert!(matches!(a.authenticate(&expired, now), LocalVerdict::Invalid(TokenError::Expired)));
        assert_eq!(a.cached(), 0);
        // Retiring a key ends its cached tokens.
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("k1".into());
        let with_kid = encode(&h, &json!({"sub": "u", "exp": now + 100}), &EncodingKey::from_secret(b"k")).unwrap();
        let mut ks = KeySet::new();
        ks.insert(crate::keys::VerifyKey {
            kid: Some("k1".into()),
            alg: Algorithm::HS256,
            key: jsonwebtoken::DecodingKey::from_secret(b"k"),
            spki: None,
        });
        a.set_keys(ks);
        assert!(matches!(a.authenticate(&with_kid, now), LocalVerdict::Valid { cache_hit: false, .. }));
        assert!(matches!(a.authenticate(&with_kid, now), LocalVerdict::Valid { cache_hit: true, .. }));
        a.set_keys(KeySet::new());
        assert!(matches!(a.authenticate(&with_kid, now), LocalVerdict::Unknown));
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("rotated".into());
        let unknown = encode(&h, &json!({"sub": "u", "exp": now + 100}), &EncodingKey::from_secret(b"k")).unwrap();
        assert!(matches!(a.authenticate(&unknown, now), LocalVerdict::Unknown));
    }
}
