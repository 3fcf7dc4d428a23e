//! Verification keys: a JWKS turned into ready-to-use decoding keys, looked up by `kid`.
//!
//! Keys are parsed once when a key set arrives (from the auth service's JWKS, or pushed by the
//! sidecar to the filter), never per request. A key carries the one algorithm it may be used
//! with; a token whose header names another algorithm is refused, which closes the classic
//! "HMAC signed with the RSA public key" confusion.

use std::collections::HashMap;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key set could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key set is not valid JWKS JSON: {0}")]
    BadJson(String),
    #[error("key {kid:?}: {reason}")]
    BadKey { kid: String, reason: String },
}

/// One usable verification key.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub key: DecodingKey,
    /// SubjectPublicKeyInfo DER for RSA and ECDSA keys (built once), for a host's native
    /// verifier ([`crate::token::NativeVerifier`]).
    pub spki: Option<std::sync::Arc<[u8]>>,
}

impl std::fmt::Debug for VerifyKey {
    // Key material (an HMAC secret above all) must never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("alg", &self.alg).finish()
    }
}

/// The keys a verifier holds.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
    /// Keys for tokens without a `kid` (the platform's HS256 `JWT_SECRET` tokens).
    kidless: Vec<VerifyKey>,
}

impl KeySet {
    /// An empty key set: every token is "unknown key".
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; a key without `kid` serves tokens without `kid`.
    pub fn insert(&mut self, key: VerifyKey) {
        match key.kid.clone() {
            Some(kid) => {
                self.by_kid.insert(kid, key);
            }
            None => self.kidless.push(key),
        }
    }

    /// Adds every signing key of a JWKS document. Keys marked `"use": "enc"` are skipped; a key
    /// that cannot be parsed fails the whole set, so a half-understood JWKS is never trusted.
    pub fn extend_from_jwks_json(&mut self, json: &str) -> Result<(), KeyError> {
        let set: JwkSet = serde_json::from_str(json).map_err(|e| KeyError::BadJson(e.to_string()))?;
        for jwk in &set.keys {
            if let Some(key) = verify_key_from_jwk(jwk)? {
                self.insert(key);
            }
        }
        Ok(())
    }

    /// Adds an HMAC secret for tokens without `kid` (HS256, the platform's `JWT_SECRET`).
    pub fn add_hmac_secret(&mut self, secret: &[u8], alg: Algorithm) {
        self.insert(VerifyKey { kid: None, alg, key: DecodingKey::from_secret(secret), spki: None });
    }

    /// The key for a token header, if we hold it. `None` means "unknown key": the caller may
    /// refresh its keys or ask the sidecar.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyKey> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None => self.kidless.iter().find(|k| k.alg == alg),
        }
    }

    /// Whether a key with this `kid` is still trusted.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.kidless.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `kid`s held, for logs and metrics.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.by_kid.keys().map(String::as_str)
    }
}

/// Converts a JWK into a verification key, or `None` for an encryption key.
pub fn verify_key_from_jwk(jwk: &Jwk) -> Result<Option<VerifyKey>, KeyError> {
    let kid = jwk.common.key_id.clone();
    let bad = |reason: &str| KeyError::BadKey { kid: kid.clone().unwrap_or_default(), reason: reason.to_string() };
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Ok(None);
    }
    let inferred = infer_algorithm(&jwk.algorithm).ok_or_else(|| bad("unsupported key type"))?;
    let alg = match jwk.common.key_algorithm {
        Some(ka) => {
            let alg = Algorithm::from_str(&ka.to_string()).map_err(|_| bad("unsupported alg"))?;
            if alg.family() != inferred.family() {
                return Err(bad("alg does not match the key type"));
            }
            alg
        }
        None => inferred,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(&e.to_string()))?;
    let spki = crate::spki::from_jwk(jwk).map(std::sync::Arc::from);
    Ok(Some(VerifyKey { kid, alg, key, spki }))
}

/// The algorithm a key type implies when the JWK does not name one.
fn infer_algorithm(params: &AlgorithmParameters) -> Option<Algorithm> {
    match params {
        AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => None,
        },
        AlgorithmParameters::OctetKeyPair(okp) => match okp.curve {
            EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
            _ => None,
        },
        AlgorithmParameters::OctetKey(_) => Some(Algorithm::HS256),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RSA_JWK: &str = r#"{"keys":[{"kty":"RSA","kid":"k1","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},{"kty":"RSA","kid":"enc","use":"enc","n":"AQAB","e":"AQAB"}]}"#;

    #[test]
    fn jwks_loads_signing_keys_and_skips_encryption_keys() {
        let mut ks = KeySet::new();
        ks.extend_from_jwks_json(RSA_JWK).unwrap();
        assert_eq!(ks.len(), 1);
        let k = ks.find(Some("k1"), Algorithm::RS256).unwrap();
        assert_eq!(k.alg, Algorithm::RS256);
        assert!(ks.find(Some("enc"), Algorithm::RS256).is_none());
        assert!(ks.find(None, Algorithm::RS256).is_none());
    }

    #[test]
    fn bad_documents_are_refused() {
        let mut ks = KeySet::new();
        assert!(matches!(ks.extend_from_jwks_json("{"), Err(KeyError::BadJson(_))));
        let mismatched = r#"{"keys":[{"kty":"oct","kid":"h","alg":"RS256","k":"c2VjcmV0"}]}"#;
        assert!(matches!(ks.extend_from_jwks_json(mismatched), Err(KeyError::BadKey { .. })));
    }

    #[test]
    fn hmac_secret_serves_kidless_tokens_of_its_algorithm_only() {
        let mut ks = KeySet::new();
        ks.add_hmac_secret(b"s3cret", Algorithm::HS256);
        assert!(ks.find(None, Algorithm::HS256).is_some());
        assert!(ks.find(None, Algorithm::HS512).is_none());
        assert!(!format!("{ks:?}").contains("s3cret"));
    }
}
