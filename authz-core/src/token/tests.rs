//! Table-driven verdicts for every kind of token the gateway must accept or refuse.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, encode};
use serde_json::{Value, json};

use super::*;
use crate::keys::VerifyKey;

const NOW: u64 = 1_700_000_000;
const PRIV: &str = include_str!("../../../tests/fixtures/dev-rsa-private.pem");
const PUB: &str = include_str!("../../../tests/fixtures/dev-rsa-public.pem");
const OTHER_PRIV: &str = include_str!("../../../tests/fixtures/other-rsa-private.pem");
const SECRET: &[u8] = b"platform-jwt-secret";

fn keys() -> KeySet {
    let mut ks = KeySet::new();
    ks.insert(VerifyKey {
        kid: Some("dev-1".into()),
        alg: Algorithm::RS256,
        key: DecodingKey::from_rsa_pem(PUB.as_bytes()).unwrap(),
        spki: None,
    });
    ks.add_hmac_secret(SECRET, Algorithm::HS256);
    ks
}

fn policy() -> ClaimsPolicy {
    ClaimsPolicy {
        issuers: vec!["https://auth.test".into()],
        audiences: vec!["gateway".into()],
        clock_skew_secs: 60,
        require_exp: true,
    }
}

fn claims() -> Value {
    json!({"sub": "u1", "iss": "https://auth.test", "aud": "gateway", "exp": NOW + 300, "iat": NOW, "roles": ["user"]})
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn rs256(c: &Value) -> String {
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("dev-1".into());
    encode(&h, c, &EncodingKey::from_rsa_pem(PRIV.as_bytes()).unwrap()).unwrap()
}

fn hs256(c: &Value) -> String {
    encode(&Header::new(Algorithm::HS256), c, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn b64(v: &Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A token assembled by hand, for headers `jsonwebtoken` would never produce.
fn raw(header: Value, c: &Value, sig: &str) -> String {
    format!("{}.{}.{}", b64(&header), b64(c), sig)
}

/// Correctly HS256-signed, whatever the header and payload say.
fn signed_raw(header: Value, c: &Value) -> String {
    let msg = format!("{}.{}", b64(&header), b64(c));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &EncodingKey::from_secret(SECRET), Algorithm::HS256).unwrap();
    format!("{msg}.{sig}")
}

fn sig_of(token: &str) -> String {
    token.rsplit('.').next().unwrap().to_string()
}

#[test]
fn verdicts() {
    crate::crypto::ensure_provider();
    let good = rs256(&claims());
    let other_key = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("dev-1".into());
        encode(&h, &claims(), &EncodingKey::from_rsa_pem(OTHER_PRIV.as_bytes()).unwrap()).unwrap()
    };
    // HS256 "signed" with the RSA public key as the secret: the algorithm-confusion attack.
    let confused = {
        let mut h = Header::new(Algorithm::HS256);
        h.kid = Some("dev-1".into());
        encode(&h, &claims(), &EncodingKey::from_secret(PUB.as_bytes())).unwrap()
    };
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        format!("{}.{}.{}", parts[0], b64(&with(claims(), "sub", json!("admin"))), parts[2])
    };
    let cases: Vec<(&str, String, Result<&str, TokenError>)> = vec![
        ("valid RS256", good.clone(), Ok("u1")),
        ("valid HS256 without kid", hs256(&claims()), Ok("u1")),
        ("expired", rs256(&with(claims(), "exp", json!(NOW - 3600))), Err(TokenError::Expired)),
        ("not yet valid", rs256(&with(claims(), "nbf", json!(NOW + 3600))), Err(TokenError::NotYetValid)),
        ("iat in future", rs256(&with(claims(), "iat", json!(NOW + 3600))), Err(TokenError::IssuedInFuture)),
        ("missing exp", rs256(&with(claims(), "exp", Value::Null)), Err(TokenError::MissingClaim("exp"))),
        ("wrong issuer", rs256(&with(claims(), "iss", json!("https://evil"))), Err(TokenError::WrongIssuer)),
        ("wrong audience", rs256(&with(claims(), "aud", json!("billing-api"))), Err(TokenError::WrongAudience)),
        ("bad signature (other key)", other_key, Err(TokenError::BadSignature)),
        ("tampered payload", tampered, Err(TokenError::BadSignature)),
        ("HMAC with the RSA public key", confused, Err(TokenError::AlgorithmMismatch)),
        ("alg none", raw(json!({"alg": "none", "kid": "dev-1"}), &claims(), ""), Err(TokenError::UnsupportedAlgorithm)),
        ("alg NoNe", raw(json!({"alg": "NoNe"}), &claims(), ""), Err(TokenError::UnsupportedAlgorithm)),
        (
            "unknown kid",
            raw(json!({"alg": "RS256", "kid": "nope"}), &claims(), &sig_of(&good)),
            Err(TokenError::UnknownKey),
        ),
        (
            "kidless RS256 (no default RSA key)",
            raw(json!({"alg": "RS256"}), &claims(), &sig_of(&good)),
            Err(TokenError::UnknownKey),
        ),
        (
            "unknown crit",
            raw(json!({"alg": "RS256", "kid": "dev-1", "crit": ["exp"], "exp": 1}), &claims(), &sig_of(&good)),
            Err(TokenError::UnknownCritical),
        ),
        ("two segments", "a.b".into(), Err(TokenError::Malformed)),
        ("four segments", format!("{good}.x"), Err(TokenError::Malformed)),
        ("garbage header", "!!!.e30.sig".into(), Err(TokenError::Malformed)),
        (
            "header not JSON",
            format!("{}.e30.sig", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode("nope")),
            Err(TokenError::Malformed),
        ),
        ("empty signature", format!("{}.", good.rsplit_once('.').unwrap().0), Err(TokenError::BadSignature)),
        ("signature not base64url", raw(json!({"alg": "HS256"}), &claims(), "x"), Err(TokenError::Malformed)),
        (
            "payload not an object (signed)",
            signed_raw(json!({"alg": "HS256"}), &json!([1, 2])),
            Err(TokenError::Malformed),
        ),
        ("too large", "a".repeat(MAX_TOKEN_LEN + 1), Err(TokenError::TooLarge)),
    ];
    let ks = keys();
    for (name, token, want) in cases {
        let got = verify_token(&token, &ks, &policy(), NOW);
        match want {
            Ok(sub) => assert_eq!(got.map(|c| c.sub.unwrap_or_default()).as_deref(), Ok(sub), "case {name}"),
            Err(e) => assert_eq!(got.map(|_| ()), Err(e), "case {name}"),
        }
    }
}

#[test]
fn codes_are_stable_and_distinct() {
    let all = [
        TokenError::Malformed,
        TokenError::TooLarge,
        TokenError::UnsupportedAlgorithm,
        TokenError::UnknownCritical,
        TokenError::UnknownKey,
        TokenError::AlgorithmMismatch,
        TokenError::BadSignature,
        TokenError::Expired,
        TokenError::NotYetValid,
        TokenError::IssuedInFuture,
        TokenError::MissingClaim("exp"),
        TokenError::BadClaim("sub"),
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
    ];
    let codes: std::collections::HashSet<_> = all.iter().map(TokenError::code).collect();
    assert_eq!(codes.len(), all.len());
    assert_eq!(TokenError::Expired.code(), "token_expired");
}

/// A native verifier backed by jsonwebtoken itself, to exercise the native path natively.
struct Native(std::cell::Cell<u32>);

impl NativeVerifier for Native {
    fn verify(&self, hash: &'static str, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
        self.0.set(self.0.get() + 1);
        assert_eq!(hash, "sha256");
        // Re-encode the SPKI as PEM and the signature back to the JWS form, then verify.
        use base64::Engine as _;
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(spki_der)
        );
        let key = DecodingKey::from_rsa_pem(pem.as_bytes()).ok()?;
        let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
        jsonwebtoken::crypto::verify(&sig, message, &key, Algorithm::RS256).ok()
    }
}

#[test]
fn native_verifier_is_used_for_keys_with_spki_and_gives_the_same_verdicts() {
    crate::crypto::ensure_provider();
    let jwks = {
        let enc = EncodingKey::from_rsa_pem(PRIV.as_bytes()).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("dev-1".into());
        serde_json::json!({"keys": [jwk]}).to_string()
    };
    let mut ks = KeySet::new();
    ks.extend_from_jwks_json(&jwks, crate::keys::Source::Local).unwrap();
    let native = Native(std::cell::Cell::new(0));
    let good = rs256(&claims());
    let other = {
        let mut h = Header::new(Algorithm::RS256);
        h.kid = Some("dev-1".into());
        encode(&h, &claims(), &EncodingKey::from_rsa_pem(OTHER_PRIV.as_bytes()).unwrap()).unwrap()
    };
    let expired = rs256(&with(claims(), "exp", json!(NOW - 3600)));
    let p = policy();
    assert_eq!(verify_token_time_with(&good, &ks, &p, NOW, Some(&native)).unwrap().sub.as_deref(), Some("u1"));
    assert_eq!(verify_token_time_with(&other, &ks, &p, NOW, Some(&native)).map(|_| ()), Err(TokenError::BadSignature));
    assert_eq!(verify_token_time_with(&expired, &ks, &p, NOW, Some(&native)).map(|_| ()), Err(TokenError::Expired));
    assert_eq!(native.0.get(), 3);
    assert_eq!(
        verify_token_time_with(&good, &ks, &p, NOW, Some(&native)).unwrap().verified_kid.as_deref(),
        Some("dev-1")
    );
}

#[test]
fn a_token_without_kid_is_verified_by_a_key_with_one() {
    crate::crypto::ensure_provider();
    let enc = EncodingKey::from_rsa_pem(PRIV.as_bytes()).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&enc, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("dev-1".into());
    let other = {
        let e = EncodingKey::from_rsa_pem(OTHER_PRIV.as_bytes()).unwrap();
        let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(&e, Algorithm::RS256).unwrap();
        j.common.key_id = Some("other".into());
        j
    };
    // The fitting key comes second: the first does not verify, the next is tried.
    let jwks = serde_json::json!({"keys": [other, jwk]}).to_string();
    let mut ks = KeySet::new();
    ks.extend_from_jwks_json(&jwks, crate::keys::Source::Remote).unwrap();
    let kidless = encode(&Header::new(Algorithm::RS256), &claims(), &enc).unwrap();
    let p = policy();
    for native in [None, Some(&Native(std::cell::Cell::new(0)) as &dyn NativeVerifier)] {
        let c = verify_token_time_with(&kidless, &ks, &p, NOW, native).unwrap();
        assert_eq!(c.verified_kid.as_deref(), Some("dev-1"), "the key that verified is remembered");
    }
    // Signed by a key we do not hold: unknown (the sidecar may refresh), not a bad signature.
    let stranger =
        encode(&Header::new(Algorithm::RS256), &claims(), &EncodingKey::from_rsa_pem(OTHER_PRIV.as_bytes()).unwrap())
            .unwrap();
    let mut only_dev = KeySet::new();
    only_dev
        .extend_from_jwks_json(
            &serde_json::json!({"keys": [serde_json::from_str::<serde_json::Value>(&jwks).unwrap()["keys"][1]]})
                .to_string(),
            crate::keys::Source::Remote,
        )
        .unwrap();
    assert_eq!(verify_token_time_with(&stranger, &only_dev, &p, NOW, None).map(|_| ()), Err(TokenError::UnknownKey));
}

/// ES512 (P-521), a key and tokens made with Python's `cryptography` (the token expires in 2036).
#[test]
fn es512_tokens_verify_through_aws_lc_and_a_native_verifier() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("../../testdata/es512.json")).unwrap();
    let mut ks = KeySet::new();
    let loaded = ks.extend_from_jwks_json(&fixture["jwks"].to_string(), crate::keys::Source::Remote).unwrap();
    assert_eq!(loaded.used, [0]);
    assert!(ks.has_kid("p521-1"));
    let token = fixture["token"].as_str().unwrap();
    let p = ClaimsPolicy::default();
    let now = 1_800_000_000;
    let c = verify_token_time(token, &ks, &p, now).unwrap();
    assert_eq!((c.sub.as_deref(), c.verified_kid.as_deref()), (Some("u-es512"), Some("p521-1")));
    let kidless = fixture["kidless"].as_str().unwrap();
    assert_eq!(verify_token_time(kidless, &ks, &p, now).unwrap().verified_kid.as_deref(), Some("p521-1"));
    // A native verifier is asked first (sha512 over the signing input, DER signature).
    struct NativeP521(std::cell::Cell<u32>);
    impl NativeVerifier for NativeP521 {
        fn verify(&self, hash: &'static str, spki_der: &[u8], signature: &[u8], message: &[u8]) -> Option<bool> {
            use aws_lc_rs::signature::{ECDSA_P521_SHA512_ASN1, UnparsedPublicKey};
            self.0.set(self.0.get() + 1);
            assert_eq!(hash, "sha512");
            let point = &spki_der[spki_der.len() - 133..];
            Some(UnparsedPublicKey::new(&ECDSA_P521_SHA512_ASN1, point).verify(message, signature).is_ok())
        }
    }
    let native = NativeP521(std::cell::Cell::new(0));
    assert!(verify_token_time_with(token, &ks, &p, now, Some(&native)).is_ok());
    assert_eq!(native.0.get(), 1);
    let (head, sig) = token.rsplit_once('.').unwrap();
    let flipped = format!("{head}.{}{}", if sig.starts_with('A') { "B" } else { "A" }, &sig[1..]);
    assert_eq!(verify_token_time(&flipped, &ks, &p, now).map(|_| ()), Err(TokenError::BadSignature));
    assert_eq!(verify_token_time(token, &KeySet::new(), &p, now).map(|_| ()), Err(TokenError::UnknownKey));
    assert_eq!(verify_token_time(token, &ks, &p, 2_100_000_000).map(|_| ()), Err(TokenError::Expired));
}
