//! ES512 (ECDSA P-521 with SHA-512, RFC 7518 §3.4), which `jsonwebtoken` does not implement.
//! The signature is checked by the host's native verifier where there is one (Envoy's
//! BoringSSL in the filter) or by aws-lc (the sidecar); a host with neither answers "unknown
//! key", so the filter hands the token to the sidecar. The claims are judged as for every
//! other algorithm.

use base64::Engine as _;

use super::{NativeVerifier, TokenError};
use crate::claims::{Claims, ClaimsPolicy};
use crate::keys::{Es512Key, KeySet};

/// The raw signature: `r || s`, 66 bytes each.
const SIGNATURE_LEN: usize = 132;

/// The header fields an ES512 token is judged by.
#[derive(serde::Deserialize)]
pub(super) struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// The header of an ES512 token, if this is one.
pub(super) fn header(token: &str) -> Option<Header> {
    let h = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(h).ok()?;
    serde_json::from_slice::<Header>(&bytes).ok().filter(|h| h.alg == "ES512")
}

pub(super) fn verify(
    token: &str,
    header: &Header,
    keys: &KeySet,
    policy: &ClaimsPolicy,
    now: u64,
    native: Option<&dyn NativeVerifier>,
) -> Result<Claims, TokenError> {
    if header.crit.is_some() {
        return Err(TokenError::UnknownCritical);
    }
    let (message, sig_b64) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
    let mut tried = false;
    let mut tried_kidless = false;
    for key in keys.es512_candidates(header.kid.as_deref()) {
        tried = true;
        tried_kidless |= key.kid.is_none();
        if raw.len() != SIGNATURE_LEN {
            return Err(TokenError::BadSignature);
        }
        match check(key, message.as_bytes(), &raw, native) {
            Some(true) => {
                let mut claims: Claims =
                    jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| TokenError::Malformed)?;
                policy.check_time(&claims, now)?;
                claims.verified_kid = key.kid.clone();
                return Ok(claims);
            }
            Some(false) => {}
            // No verifier here: the sidecar decides.
            None => return Err(TokenError::UnknownKey),
        }
    }
    if !tried || (header.kid.is_none() && !tried_kidless) {
        return Err(TokenError::UnknownKey);
    }
    Err(TokenError::BadSignature)
}

/// `Some(valid)`, or `None` when this host cannot verify ES512.
fn check(key: &Es512Key, message: &[u8], raw: &[u8], native: Option<&dyn NativeVerifier>) -> Option<bool> {
    if let Some(native) = native
        && let Some(der) = crate::spki::ecdsa_raw_to_der(raw)
        && let Some(valid) = native.verify("sha512", &key.spki, &der, message)
    {
        return Some(valid);
    }
    aws_lc(key, message, raw)
}

#[cfg(feature = "aws-lc")]
fn aws_lc(key: &Es512Key, message: &[u8], raw: &[u8]) -> Option<bool> {
    use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED, UnparsedPublicKey};
    Some(UnparsedPublicKey::new(&ECDSA_P521_SHA512_FIXED, &key.point[..]).verify(message, raw).is_ok())
}

#[cfg(not(feature = "aws-lc"))]
fn aws_lc(_key: &Es512Key, _message: &[u8], _raw: &[u8]) -> Option<bool> {
    None
}
