//! DER encodings a host's native crypto needs: a public key as SubjectPublicKeyInfo (built
//! once per key from its JWK) and an ECDSA signature as `SEQUENCE { r, s }` (JWS carries the
//! raw `r || s`). Only what the filter hands to Envoy's `verify_signature`.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};

const OID_RSA_ENCRYPTION: &[u8] = &[0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const OID_P521: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

/// `tag || length || body` with DER's definite length form.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = body.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len.to_be_bytes().into_iter().skip_while(|b| *b == 0).collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(body);
    out
}

/// A non-negative INTEGER from big-endian bytes (leading zeros dropped, a zero prepended when
/// the high bit is set).
fn uint(bytes: &[u8]) -> Vec<u8> {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len().saturating_sub(1));
    let trimmed = &bytes[start..];
    if trimmed.first().is_some_and(|b| b & 0x80 != 0) {
        let mut v = vec![0];
        v.extend_from_slice(trimmed);
        tlv(0x02, &v)
    } else {
        tlv(0x02, trimmed)
    }
}

fn b64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// The SubjectPublicKeyInfo DER of an RSA or P-256/P-384/P-521 JWK; `None` for other key types.
pub fn from_jwk(jwk: &Jwk) -> Option<Vec<u8>> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(rsa) => {
            let key = tlv(0x30, &[uint(&b64(&rsa.n)?), uint(&b64(&rsa.e)?)].concat());
            let mut bits = vec![0];
            bits.extend(key);
            let alg = tlv(0x30, &[OID_RSA_ENCRYPTION, &[0x05, 0x00]].concat());
            Some(tlv(0x30, &[alg, tlv(0x03, &bits)].concat()))
        }
        AlgorithmParameters::EllipticCurve(ec) => {
            let (curve, width) = match ec.curve {
                EllipticCurve::P256 => (OID_P256, 32),
                EllipticCurve::P384 => (OID_P384, 48),
                EllipticCurve::P521 => (OID_P521, 66),
                _ => return None,
            };
            let (x, y) = (b64(&ec.x)?, b64(&ec.y)?);
            if x.len() != width || y.len() != width {
                return None;
            }
            let mut bits = vec![0, 0x04];
            bits.extend(x);
            bits.extend(y);
            let alg = tlv(0x30, &[OID_EC_PUBLIC_KEY, curve].concat());
            Some(tlv(0x30, &[alg, tlv(0x03, &bits)].concat()))
        }
        _ => None,
    }
}

/// JWS ECDSA signature (`r || s`, fixed width) to DER; `None` for an odd or oversized input.
pub fn ecdsa_raw_to_der(raw: &[u8]) -> Option<Vec<u8>> {
    if raw.is_empty() || !raw.len().is_multiple_of(2) || raw.len() > 132 {
        return None;
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    Some(tlv(0x30, &[uint(r), uint(s)].concat()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsa_spki_matches_openssl() {
        // The SPKI of tests/fixtures/dev-rsa-public.pem, as openssl wrote it.
        let pem = include_str!("../../tests/fixtures/dev-rsa-public.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        crate::crypto::ensure_provider();
        let private = include_str!("../../tests/fixtures/dev-rsa-private.pem");
        let enc = jsonwebtoken::EncodingKey::from_rsa_pem(private.as_bytes()).unwrap();
        let jwk = Jwk::from_encoding_key(&enc, jsonwebtoken::Algorithm::RS256).unwrap();
        assert_eq!(from_jwk(&jwk).unwrap(), want);
    }

    #[test]
    fn ec_spki_matches_openssl() {
        let pem = include_str!("../../tests/fixtures/dev-ec256-public.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let want = base64::engine::general_purpose::STANDARD.decode(body).unwrap();
        // x and y are the last 64 bytes of the SPKI.
        let (x, y) = want[want.len() - 64..].split_at(32);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256",
            "x": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(x),
            "y": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(y),
        }))
        .unwrap();
        assert_eq!(from_jwk(&jwk).unwrap(), want);
    }

    #[test]
    fn der_of_raw_ecdsa() {
        let mut raw = vec![0u8; 64];
        raw[31] = 1; // r = 1
        raw[32] = 0x80; // s has its high bit set: needs a leading zero
        let der = ecdsa_raw_to_der(&raw).unwrap();
        assert_eq!(&der[..5], &[0x30, 0x26, 0x02, 0x01, 0x01]);
        assert_eq!(&der[5..8], &[0x02, 0x21, 0x00]);
        assert!(ecdsa_raw_to_der(&[1, 2, 3]).is_none());
    }
}
