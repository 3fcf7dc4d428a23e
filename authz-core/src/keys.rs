//! Verification keys: a JWKS turned into ready-to-use decoding keys, looked up by `kid`.
//!
//! Keys are parsed once when a key set arrives (from the auth service's JWKS, or pushed by the
//! sidecar to the filter), never per request. A key carries the one algorithm it may be used
//! with; a token whose header names another algorithm is refused, which closes the classic
//! "HMAC signed with the RSA public key" confusion.

use std::collections::HashMap;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

/// A key set could not be built.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("key set is not valid JWKS JSON: {0}")]
    BadJson(String),
    /// Keys were offered and none can be used: the caller keeps its last good set.
    #[error("no usable key in the key set ({})", summary(.0))]
    NoUsableKey(Vec<Skipped>),
}

fn summary(skipped: &[Skipped]) -> String {
    skipped.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Where a key set comes from. Symmetric (`oct`) keys are taken only from local sources: a
/// JWKS endpoint that serves a secret lets anyone who can read it forge tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A URL (the identity provider's JWKS endpoint).
    Remote,
    /// A file, inline configuration, the configured secret, or the sidecar's push.
    Local,
}

/// A key of a JWKS that is not used, and why (RFC 7517 §5: ignore keys you cannot use).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    /// Its position in the document (for keys without `kid`).
    pub position: usize,
    pub kid: Option<String>,
    pub kty: Option<String>,
    pub crv: Option<String>,
    pub alg: Option<String>,
    pub reason: String,
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "key #{}", self.position)?;
        for (name, value) in [("kid", &self.kid), ("kty", &self.kty), ("crv", &self.crv), ("alg", &self.alg)] {
            if let Some(v) = value {
                write!(f, " {name}={v:?}")?;
            }
        }
        write!(f, ": {}", self.reason)
    }
}

/// What a JWKS document gave.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Positions of the keys taken.
    pub used: Vec<usize>,
    pub skipped: Vec<Skipped>,
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

/// A P-521 key for ES512, which `jsonwebtoken` does not implement: verified by the host's
/// native crypto (Envoy's BoringSSL, through `verify_signature`) or, in the sidecar, by aws-lc.
#[derive(Clone)]
pub struct Es512Key {
    pub kid: Option<String>,
    /// The uncompressed point (`0x04 || x || y`), for aws-lc.
    pub point: std::sync::Arc<[u8]>,
    /// SubjectPublicKeyInfo DER, for a native verifier.
    pub spki: std::sync::Arc<[u8]>,
}

impl std::fmt::Debug for Es512Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Es512Key").field("kid", &self.kid).finish()
    }
}

/// At most this many keys are tried for a token without `kid` (Envoy's `jwt_authn` and
/// google/jwt_verify_lib try every key that fits; the bound keeps a large set from turning one
/// forged token into many verifications).
pub const MAX_KIDLESS_CANDIDATES: usize = 8;

/// The keys a verifier holds.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
    /// The `kid`s in the order their keys arrived (tokens without `kid` try them in order).
    kid_order: Vec<String>,
    /// Keys without a `kid` (the platform's HS256 `JWT_SECRET` tokens).
    kidless: Vec<VerifyKey>,
    /// P-521 keys (ES512), in arrival order.
    es512: Vec<Es512Key>,
}

impl KeySet {
    /// An empty key set: every token is "unknown key".
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key; a key with a `kid` already held replaces it.
    pub fn insert(&mut self, key: VerifyKey) {
        match key.kid.clone() {
            Some(kid) => {
                if self.by_kid.insert(kid.clone(), key).is_none() {
                    self.kid_order.push(kid);
                }
            }
            None => self.kidless.push(key),
        }
    }

    /// Adds every usable signing key of a JWKS document and reports the others (unknown `kty`,
    /// curve or `alg`, a bad encoding, a `use` other than `sig`, a symmetric key from a URL):
    /// one key we cannot use must not take the usable ones down. A document that offers keys
    /// and none usable is [`KeyError::NoUsableKey`], so the caller keeps its last good set.
    pub fn extend_from_jwks_json(&mut self, json: &str, source: Source) -> Result<Loaded, KeyError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_str(json).map_err(|e| KeyError::BadJson(e.to_string()))?;
        let mut loaded = Loaded::default();
        let mut keys = Vec::new();
        for (position, value) in doc.keys.iter().enumerate() {
            let text = |name: &str| value.get(name).and_then(serde_json::Value::as_str).map(str::to_string);
            let skip = |reason: String| Skipped {
                position,
                kid: text("kid"),
                kty: text("kty"),
                crv: text("crv"),
                alg: text("alg"),
                reason,
            };
            let usable = serde_json::from_value::<Jwk>(value.clone())
                .map_err(|e| format!("unreadable: {e}"))
                .and_then(|jwk| usable_key(&jwk, text("alg").as_deref(), source));
            match usable {
                Ok(key) => {
                    loaded.used.push(position);
                    keys.push(key);
                }
                Err(reason) => loaded.skipped.push(skip(reason)),
            }
        }
        if keys.is_empty() && !doc.keys.is_empty() {
            return Err(KeyError::NoUsableKey(loaded.skipped));
        }
        for key in keys {
            match key {
                Usable::Standard(k) => self.insert(k),
                Usable::Es512(k) => {
                    if let Some(kid) = &k.kid {
                        self.es512.retain(|e| e.kid.as_ref() != Some(kid));
                    }
                    self.es512.push(k);
                }
            }
        }
        Ok(loaded)
    }

    /// The ES512 keys to try for a token header: the one with its `kid`, or (no `kid`) each in
    /// order, at most [`MAX_KIDLESS_CANDIDATES`].
    pub fn es512_candidates<'a>(&'a self, kid: Option<&'a str>) -> impl Iterator<Item = &'a Es512Key> + 'a {
        self.es512.iter().filter(move |k| kid.is_none_or(|kid| k.kid.as_deref() == Some(kid))).take(if kid.is_some() {
            1
        } else {
            MAX_KIDLESS_CANDIDATES
        })
    }

    /// Adds an HMAC secret for tokens without `kid` (HS256, the platform's `JWT_SECRET`).
    pub fn add_hmac_secret(&mut self, secret: &[u8], alg: Algorithm) {
        self.insert(VerifyKey { kid: None, alg, key: DecodingKey::from_secret(secret), spki: None });
    }

    /// The key for a token header, if we hold it. `None` means "unknown key": the caller may
    /// refresh its keys or ask the sidecar.
    pub fn find(&self, kid: Option<&str>, alg: Algorithm) -> Option<&VerifyKey> {
        self.candidates(kid, alg).next()
    }

    /// The keys to try for a token header: the one with its `kid`; for a token without `kid`,
    /// the keys without `kid` and then those with one, whose algorithm is the token's, in
    /// order, at most [`MAX_KIDLESS_CANDIDATES`].
    pub fn candidates<'a>(&'a self, kid: Option<&str>, alg: Algorithm) -> Box<dyn Iterator<Item = &'a VerifyKey> + 'a> {
        match kid {
            Some(kid) => Box::new(self.by_kid.get(kid).into_iter()),
            None => Box::new(
                self.kidless
                    .iter()
                    .chain(self.kid_order.iter().filter_map(|k| self.by_kid.get(k)))
                    .filter(move |k| k.alg == alg)
                    .take(MAX_KIDLESS_CANDIDATES),
            ),
        }
    }

    /// Whether a key with this `kid` is still trusted.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid) || self.es512.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    pub fn len(&self) -> usize {
        self.by_kid.len() + self.kidless.len() + self.es512.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `kid`s held, for logs and metrics.
    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.kid_order.iter().map(String::as_str).chain(self.es512.iter().filter_map(|k| k.kid.as_deref()))
    }
}

/// A key taken from a JWKS.
enum Usable {
    Standard(VerifyKey),
    Es512(Es512Key),
}

/// A JWK as a verification key, or why it cannot be one. `alg` is the JWK's own `alg` text
/// (`jsonwebtoken` does not know `ES512`).
fn usable_key(jwk: &Jwk, alg: Option<&str>, source: Source) -> Result<Usable, String> {
    if let AlgorithmParameters::EllipticCurve(ec) = &jwk.algorithm
        && ec.curve == EllipticCurve::P521
    {
        match &jwk.common.public_key_use {
            None | Some(PublicKeyUse::Signature) => {}
            _ => return Err("not a signing key (use is not \"sig\")".into()),
        }
        if alg.is_some_and(|a| a != "ES512") {
            return Err("alg does not match the key type".into());
        }
        let spki = crate::spki::from_jwk(jwk).ok_or("bad key material: P-521 coordinates")?;
        // The point is the BIT STRING's content after its unused-bits byte: the last 133 bytes.
        let point = spki.get(spki.len().saturating_sub(133)..).map(<[u8]>::to_vec).ok_or("bad key material")?;
        return Ok(Usable::Es512(Es512Key { kid: jwk.common.key_id.clone(), point: point.into(), spki: spki.into() }));
    }
    usable_standard(jwk, source).map(Usable::Standard)
}

fn usable_standard(jwk: &Jwk, source: Source) -> Result<VerifyKey, String> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(PublicKeyUse::Encryption) => return Err("an encryption key (use \"enc\")".into()),
        Some(PublicKeyUse::Other(u)) => return Err(format!("use {u:?} is not \"sig\"")),
    }
    if matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) && source == Source::Remote {
        return Err("a symmetric (oct) key served by a URL: refused, anyone who can read it could sign tokens".into());
    }
    let inferred = infer_algorithm(&jwk.algorithm).ok_or("unsupported key type or curve")?;
    let alg = match jwk.common.key_algorithm {
        Some(ka) => {
            let alg = Algorithm::from_str(&ka.to_string()).map_err(|_| "unsupported alg".to_string())?;
            if alg.family() != inferred.family() {
                return Err("alg does not match the key type".into());
            }
            alg
        }
        None => inferred,
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("bad key material: {e}"))?;
    let spki = crate::spki::from_jwk(jwk).map(std::sync::Arc::from);
    Ok(VerifyKey { kid: jwk.common.key_id.clone(), alg, key, spki })
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
        let loaded = ks.extend_from_jwks_json(RSA_JWK, Source::Remote).unwrap();
        assert_eq!((loaded.used, loaded.skipped.len()), (vec![0], 1));
        assert_eq!(ks.len(), 1);
        let k = ks.find(Some("k1"), Algorithm::RS256).unwrap();
        assert_eq!(k.alg, Algorithm::RS256);
        assert!(ks.find(Some("enc"), Algorithm::RS256).is_none());
        // A token without `kid` is tried against the keys of its algorithm.
        assert_eq!(ks.find(None, Algorithm::RS256).and_then(|k| k.kid.as_deref()), Some("k1"));
    }

    #[test]
    fn bad_documents_are_refused() {
        let mut ks = KeySet::new();
        assert!(matches!(ks.extend_from_jwks_json("{", Source::Local), Err(KeyError::BadJson(_))));
        let mismatched = r#"{"keys":[{"kty":"oct","kid":"h","alg":"RS256","k":"c2VjcmV0"}]}"#;
        assert!(matches!(ks.extend_from_jwks_json(mismatched, Source::Local), Err(KeyError::NoUsableKey(_))));
        assert!(ks.extend_from_jwks_json(r#"{"keys": []}"#, Source::Remote).is_ok(), "an empty set offers nothing");
    }

    /// Keys of the shapes identity providers publish (generated with Python's `cryptography`):
    /// RSA with `x5c`, EC P-256/384/521, OKP Ed25519 and X25519, `oct`, RSA without `kid`, an
    /// encryption key, a bad encoding, an unknown `kty`.
    const MIXED: &str = include_str!("../testdata/jwks_mixed.json");

    #[test]
    fn a_mixed_key_set_uses_what_it_can_and_names_the_rest() {
        let mut ks = KeySet::new();
        let loaded = ks.extend_from_jwks_json(MIXED, Source::Remote).unwrap();
        assert_eq!(loaded.used, [0, 1, 2, 3, 4, 7], "{:#?}", loaded.skipped);
        let reason =
            |kid: &str| loaded.skipped.iter().find(|s| s.kid.as_deref() == Some(kid)).map(|s| s.reason.clone());
        assert!(reason("x25519").is_some_and(|r| r.contains("curve")));
        assert!(reason("hmac").is_some_and(|r| r.contains("symmetric")), "no secret from a URL");
        assert!(reason("rsa-enc").is_some());
        assert!(reason("bad-x").is_some());
        assert!(reason("weird").is_some(), "{:?}", reason("weird"));
        let x25519 = loaded.skipped.iter().find(|s| s.kid.as_deref() == Some("x25519")).unwrap().to_string();
        assert!(x25519.starts_with("key #5 kid=\"x25519\" kty=\"OKP\" crv=\"X25519\": "), "{x25519}");
        assert_eq!(ks.len(), 6, "P-521 is taken for ES512");
        assert!(ks.has_kid("ec-P-521"));
        assert_eq!(ks.find(Some("ed"), Algorithm::EdDSA).map(|k| k.alg), Some(Algorithm::EdDSA));
        // From a local source (a file, the sidecar's push) the secret is taken.
        let loaded = KeySet::new().extend_from_jwks_json(MIXED, Source::Local).unwrap();
        assert!(loaded.used.contains(&6));
    }

    #[test]
    fn kidless_tokens_try_every_key_of_their_algorithm_in_order() {
        let mut ks = KeySet::new();
        ks.extend_from_jwks_json(MIXED, Source::Remote).unwrap();
        let kids: Vec<_> = ks.candidates(None, Algorithm::RS256).map(|k| k.kid.clone()).collect();
        assert_eq!(kids, [None, Some("rsa-x5c".to_string())], "the kid-less key first, then by arrival");
        assert_eq!(ks.candidates(None, Algorithm::ES384).count(), 1);
        assert_eq!(ks.candidates(Some("ec-P-256"), Algorithm::ES256).count(), 1);
        assert_eq!(ks.candidates(Some("nope"), Algorithm::ES256).count(), 0);
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
