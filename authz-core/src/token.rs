//! Verifying a compact JWS access token: header rules, key choice, signature, then claims.
//!
//! The order matters for cost and safety: cheap structural checks first, the key looked up
//! by `kid` with its own algorithm (never the header's word alone), the signature checked
//! before the payload is trusted, and the claims judged last with the caller's clock.

use crate::denial::codes;
use jsonwebtoken::{Algorithm, Validation};

use crate::claims::{Claims, ClaimsPolicy};
use crate::crypto;
use crate::keys::{KeySet, VerifyKey};

/// Tokens longer than this are refused before any parsing (a header is bounded anyway; this
/// keeps a hostile client from making us base64-decode megabytes).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a token was refused. Every variant maps to a stable machine-readable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is too large")]
    TooLarge,
    #[error("token algorithm is not accepted")]
    UnsupportedAlgorithm,
    #[error("token header names a critical extension we do not understand")]
    UnknownCritical,
    #[error("no key is known for this token")]
    UnknownKey,
    #[error("token algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("token signature is invalid")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token lacks the {0} claim")]
    MissingClaim(&'static str),
    #[error("token claim {0} cannot be used")]
    BadClaim(&'static str),
    #[error("token issuer is not accepted")]
    WrongIssuer,
    #[error("token audience is not accepted")]
    WrongAudience,
}

impl TokenError {
    /// The stable code used in denial bodies, metrics and audit events.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed => codes::TOKEN_MALFORMED,
            TokenError::TooLarge => codes::TOKEN_TOO_LARGE,
            TokenError::UnsupportedAlgorithm => codes::TOKEN_UNSUPPORTED_ALG,
            TokenError::UnknownCritical => codes::TOKEN_UNKNOWN_CRIT,
            TokenError::UnknownKey => codes::TOKEN_UNKNOWN_KEY,
            TokenError::AlgorithmMismatch => codes::TOKEN_ALG_MISMATCH,
            TokenError::BadSignature => codes::TOKEN_BAD_SIGNATURE,
            TokenError::Expired => codes::TOKEN_EXPIRED,
            TokenError::NotYetValid => codes::TOKEN_NOT_YET_VALID,
            TokenError::IssuedInFuture => codes::TOKEN_ISSUED_IN_FUTURE,
            TokenError::MissingClaim(_) => codes::TOKEN_MISSING_CLAIM,
            TokenError::BadClaim(_) => codes::TOKEN_BAD_CLAIM,
            TokenError::WrongIssuer => codes::TOKEN_WRONG_ISSUER,
            TokenError::WrongAudience => codes::TOKEN_WRONG_AUDIENCE,
        }
    }
}

/// Verifies `token` against `keys` and every rule of `policy` (including its issuers and
/// audiences) at time `now` (Unix seconds).
pub fn verify_token(token: &str, keys: &KeySet, policy: &ClaimsPolicy, now: u64) -> Result<Claims, TokenError> {
    let claims = verify_token_time(token, keys, policy, now)?;
    policy.scope().check(claims.iss.as_deref(), claims.aud.as_slice())?;
    Ok(claims)
}

/// A host's own signature verification, for RSA PKCS#1 v1.5 (`RS*`) and ECDSA (`ES*`) keys
/// that carry an SPKI. In Envoy this is BoringSSL behind the `verify_signature` foreign
/// function: measured 20-40x faster than pure Rust compiled to wasm (BENCHMARKS.md).
pub trait NativeVerifier {
    /// `Some(valid)`, or `None` when the host cannot verify (the caller falls back to Rust).
    /// `signature` is DER for ECDSA.
    fn verify(&self, hash: &'static str, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool>;
}

/// The digest a native verifier needs for `alg`, and for ECDSA the raw signature width.
fn native_params(alg: Algorithm) -> Option<(&'static str, Option<usize>)> {
    match alg {
        Algorithm::RS256 => Some(("sha256", None)),
        Algorithm::RS384 => Some(("sha384", None)),
        Algorithm::RS512 => Some(("sha512", None)),
        Algorithm::ES256 => Some(("sha256", Some(64))),
        Algorithm::ES384 => Some(("sha384", Some(96))),
        _ => None,
    }
}

/// The `kid` of a token's header, if it has one (no verification: for bookkeeping only).
pub fn kid_of(token: &str) -> Option<String> {
    jsonwebtoken::decode_header(token).ok().and_then(|h| h.kid)
}

/// Verifies the signature and the route-independent claims (`exp`, `nbf`, `iat`, `sub`).
/// The caller checks issuer and audience against the route's [`crate::claims::Scope`]; this
/// split lets one cached verification serve routes with different audiences.
pub fn verify_token_time(token: &str, keys: &KeySet, policy: &ClaimsPolicy, now: u64) -> Result<Claims, TokenError> {
    verify_token_time_with(token, keys, policy, now, None)
}

/// [`verify_token_time`], using `native` for the signature when it can.
pub fn verify_token_time_with(
    token: &str,
    keys: &KeySet,
    policy: &ClaimsPolicy,
    now: u64,
    native: Option<&dyn NativeVerifier>,
) -> Result<Claims, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    if token.bytes().filter(|b| *b == b'.').count() != 2 {
        return Err(TokenError::Malformed);
    }
    // `alg: none` (any casing) and unknown algorithms fail to deserialize here (ES512 too, which
    // `jsonwebtoken` lacks: it has its own path).
    let header = match jsonwebtoken::decode_header(token) {
        Ok(h) => h,
        Err(e) => {
            if let Some(h) = es512::header(token) {
                return es512::verify(token, &h, keys, policy, now, native);
            }
            return Err(match e.kind() {
                jsonwebtoken::errors::ErrorKind::Json(_) if header_names_unknown_alg(token) => {
                    TokenError::UnsupportedAlgorithm
                }
                _ => TokenError::Malformed,
            });
        }
    };
    // We implement no JWS extension, so any `crit` entry must be refused (RFC 7515 §4.1.11).
    if header.crit.is_some() {
        return Err(TokenError::UnknownCritical);
    }
    // `jku`, `x5u` and an embedded `jwk` are ignored on purpose: keys come only from our key set.
    // A token without `kid` is tried against each key of its algorithm (`KeySet::candidates`);
    // only a signature that does not verify lets the next key try.
    let mut result = Err(TokenError::UnknownKey);
    let mut tried_kidless_key = false;
    for key in keys.candidates(header.kid.as_deref(), header.alg) {
        tried_kidless_key |= key.kid.is_none();
        result = verify_with_key(token, header.alg, key, policy, now, native);
        if !matches!(result, Err(TokenError::BadSignature)) {
            break;
        }
    }
    // A token without `kid` that no key with a `kid` verifies is "unknown key", as before
    // those keys were tried: the sidecar may refresh its keys for it (bounded, see
    // `Authenticator`). Only a key without `kid` that fails makes it a bad signature.
    if header.kid.is_none() && !tried_kidless_key && matches!(result, Err(TokenError::BadSignature)) {
        return Err(TokenError::UnknownKey);
    }
    result
}

/// The signature with one key, then the route-independent claims.
fn verify_with_key(
    token: &str,
    alg: Algorithm,
    key: &VerifyKey,
    policy: &ClaimsPolicy,
    now: u64,
    native: Option<&dyn NativeVerifier>,
) -> Result<Claims, TokenError> {
    if key.alg != alg {
        return Err(TokenError::AlgorithmMismatch);
    }
    if let (Some(native), Some(spki), Some((hash, ecdsa_width))) = (native, &key.spki, native_params(alg)) {
        use base64::Engine as _;
        let (message, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let raw =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        let signature = match ecdsa_width {
            Some(w) if raw.len() != w => return Err(TokenError::BadSignature),
            Some(_) => crate::spki::ecdsa_raw_to_der(&raw).ok_or(TokenError::BadSignature)?,
            None => raw,
        };
        match native.verify(hash, spki, &signature, message.as_bytes()) {
            Some(true) => {
                let mut claims: Claims =
                    jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| TokenError::Malformed)?;
                policy.check_time(&claims, now)?;
                claims.verified_kid = key.kid.clone();
                return Ok(claims);
            }
            Some(false) => return Err(TokenError::BadSignature),
            None => {}
        }
    }
    crypto::ensure_provider();
    let data = jsonwebtoken::decode::<Claims>(token, &key.key, &signature_only(alg)).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => TokenError::BadSignature,
            ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::AlgorithmMismatch,
            ErrorKind::InvalidKeyFormat | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidEcdsaKey => {
                TokenError::AlgorithmMismatch
            }
            // This host cannot verify the algorithm itself (the filter's verify-only provider
            // has no ECDSA; Envoy's `verify_signature` normally does it): as for a key it does
            // not hold, the sidecar decides.
            ErrorKind::UnsupportedAlgorithm => TokenError::UnknownKey,
            _ => TokenError::Malformed,
        }
    })?;
    policy.check_time(&data.claims, now)?;
    let mut claims = data.claims;
    claims.verified_kid = key.kid.clone();
    Ok(claims)
}

/// `jsonwebtoken` validation reduced to the signature: time and audience rules are ours
/// ([`ClaimsPolicy`]), so both hosts use the clock they are given.
fn signature_only(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    v
}

/// Distinguishes "header names an algorithm we refuse" (e.g. `none`) from plain garbage, so the
/// denial reason is precise. Only runs on the error path.
fn header_names_unknown_alg(token: &str) -> bool {
    use base64::Engine as _;
    let Some(h) = token.split('.').next() else { return false };
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h) else { return false };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else { return false };
    v.get("alg").is_some_and(|a| a.is_string())
}

mod es512;

#[cfg(test)]
mod tests;
