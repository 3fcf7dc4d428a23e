//! `io.jwt.*` and `crypto.sha256` for Rego, as OPA documents them, over our key parsing
//! (`authz_core::keys`, so a JWKS is read as the gateway reads one) and `jsonwebtoken` for the
//! signature. A tutorial policy that verifies the token itself works unchanged.
//!
//! - `io.jwt.decode(jwt)`: `[header, payload, signature_hex]`, nothing verified.
//! - `io.jwt.decode_verify(jwt, constraints)`: `[valid, header, payload]`, `[false, {}, {}]`
//!   unless the signature verifies with `cert` (PEM public key or certificate, a JWK, or a JWKS)
//!   or `secret`, the header's `alg` is `alg` when given, `exp`/`nbf` hold at `time` (ns, default
//!   now), `iss` is the constraint's when given, and `aud`: a token with one needs a matching
//!   constraint, a constraint needs a token that has it.
//! - `io.jwt.verify_{rs,ps,es}{256,384}` and `rs512`/`ps512`, `verify_hs{256,384,512}`,
//!   `verify_eddsa`: the signature only, with that algorithm.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use authz_core::KeySet;
use authz_core::keys::{Source, VerifyKey};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use regorus::{Engine, Value};
use serde_json::{Value as Json, json};

/// Our functions and their arity (the load-time check knows them by these names).
pub const NAMES: &[(&str, u8)] = &[
    ("io.jwt.decode", 1),
    ("io.jwt.decode_verify", 2),
    ("io.jwt.verify_rs256", 2),
    ("io.jwt.verify_rs384", 2),
    ("io.jwt.verify_rs512", 2),
    ("io.jwt.verify_ps256", 2),
    ("io.jwt.verify_ps384", 2),
    ("io.jwt.verify_ps512", 2),
    ("io.jwt.verify_es256", 2),
    ("io.jwt.verify_es384", 2),
    ("io.jwt.verify_hs256", 2),
    ("io.jwt.verify_hs384", 2),
    ("io.jwt.verify_hs512", 2),
    ("io.jwt.verify_eddsa", 2),
    ("crypto.sha256", 1),
];

pub fn register(engine: &mut Engine) -> Result<()> {
    engine.add_extension("io.jwt.decode".into(), 1, Box::new(|a: Vec<Value>| decode(&text(&a, 0)?)))?;
    engine.add_extension(
        "io.jwt.decode_verify".into(),
        2,
        Box::new(|a: Vec<Value>| {
            let constraints = to_json(a.get(1).ok_or_else(|| anyhow!("missing constraints"))?)?;
            Ok(decode_verify(&text(&a, 0)?, &constraints))
        }),
    )?;
    // The second argument: a certificate, PEM or JWK(S) for the public-key algorithms, the
    // secret itself for HMAC.
    fn hmac_key(secret: &str, alg: Algorithm) -> KeySet {
        let mut keys = KeySet::new();
        keys.add_hmac_secret(secret.as_bytes(), alg);
        keys
    }
    type KeysOf = fn(&str, Algorithm) -> KeySet;
    let verifiers: [(&str, Algorithm, KeysOf); 12] = [
        ("io.jwt.verify_rs256", Algorithm::RS256, public_keys),
        ("io.jwt.verify_rs384", Algorithm::RS384, public_keys),
        ("io.jwt.verify_rs512", Algorithm::RS512, public_keys),
        ("io.jwt.verify_ps256", Algorithm::PS256, public_keys),
        ("io.jwt.verify_ps384", Algorithm::PS384, public_keys),
        ("io.jwt.verify_ps512", Algorithm::PS512, public_keys),
        ("io.jwt.verify_es256", Algorithm::ES256, public_keys),
        ("io.jwt.verify_es384", Algorithm::ES384, public_keys),
        ("io.jwt.verify_eddsa", Algorithm::EdDSA, public_keys),
        ("io.jwt.verify_hs256", Algorithm::HS256, hmac_key),
        ("io.jwt.verify_hs384", Algorithm::HS384, hmac_key),
        ("io.jwt.verify_hs512", Algorithm::HS512, hmac_key),
    ];
    for (name, alg, keys_of) in verifiers {
        engine.add_extension(
            name.into(),
            2,
            Box::new(move |a: Vec<Value>| {
                let keys = keys_of(&text(&a, 1)?, alg);
                Ok(Value::from(verified(&text(&a, 0)?, &keys, Some(alg)).is_some()))
            }),
        )?;
    }
    engine.add_extension(
        "crypto.sha256".into(),
        1,
        Box::new(|a: Vec<Value>| Ok(Value::from(hex::encode(authz_core::cache::digest(&text(&a, 0)?))))),
    )?;
    Ok(())
}

fn text(args: &[Value], i: usize) -> Result<String> {
    match args.get(i).map(to_json).transpose()? {
        Some(Json::String(s)) => Ok(s),
        _ => bail!("argument {} must be a string", i + 1),
    }
}

fn to_json(v: &Value) -> Result<Json> {
    Ok(serde_json::to_value(v)?)
}

fn part(token: &str, i: usize) -> Result<Vec<u8>> {
    let p = token.split('.').nth(i).ok_or_else(|| anyhow!("not a JWT"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p.trim_end_matches('='))?)
}

fn decode(token: &str) -> Result<Value> {
    if token.split('.').count() != 3 {
        bail!("not a JWT");
    }
    let header: Json = serde_json::from_slice(&part(token, 0)?)?;
    let payload: Json = serde_json::from_slice(&part(token, 1)?)?;
    Ok(Value::from(json!([header, payload, hex::encode(part(token, 2)?)])))
}

/// Keys from `cert`: a JWKS, one JWK, or a PEM public key or certificate (for `alg`'s family).
fn public_keys(cert: &str, alg: Algorithm) -> KeySet {
    let mut keys = KeySet::new();
    let trimmed = cert.trim_start();
    if trimmed.starts_with('{') {
        let doc = match serde_json::from_str::<Json>(trimmed) {
            Ok(v) if v.get("keys").is_some() => v,
            Ok(v) => json!({ "keys": [v] }),
            Err(_) => return keys,
        };
        let _ = keys.extend_from_jwks_json(&doc.to_string(), Source::Local);
        return keys;
    }
    use Algorithm::*;
    let key = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(cert.as_bytes()),
        ES256 | ES384 => DecodingKey::from_ec_pem(cert.as_bytes()),
        EdDSA => DecodingKey::from_ed_pem(cert.as_bytes()),
        _ => return keys,
    };
    if let Ok(key) = key {
        keys.insert(VerifyKey { kid: None, alg, key, spki: None });
    }
    keys
}

/// The header and payload of `token` when a key of `keys` verifies its signature (and its
/// header names `alg`, when given).
fn verified(token: &str, keys: &KeySet, alg: Option<Algorithm>) -> Option<(Json, Json)> {
    let header = jsonwebtoken::decode_header(token).ok()?;
    if alg.is_some_and(|a| a != header.alg) {
        return None;
    }
    let mut v = Validation::new(header.alg);
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    authz_core::crypto::ensure_provider();
    // The first key that verifies gives the payload (one decode per key tried).
    let payload = keys
        .candidates(header.kid.as_deref(), header.alg)
        .filter(|k| k.alg == header.alg)
        .find_map(|k| jsonwebtoken::decode::<Json>(token, &k.key, &v).ok())?
        .claims;
    let header: Json = serde_json::from_slice(&part(token, 0).ok()?).ok()?;
    Some((header, payload))
}

fn decode_verify(token: &str, c: &Json) -> Value {
    let invalid = Value::from(json!([false, {}, {}]));
    let alg = match c.get("alg").and_then(Json::as_str) {
        Some(name) => match name.parse::<Algorithm>() {
            Ok(a) => Some(a),
            Err(_) => return invalid,
        },
        None => None,
    };
    let header_alg = jsonwebtoken::decode_header(token).map(|h| h.alg);
    let keys = match (c.get("cert").and_then(Json::as_str), c.get("secret").and_then(Json::as_str), header_alg) {
        (Some(cert), None, Ok(a)) => public_keys(cert, alg.unwrap_or(a)),
        (None, Some(secret), Ok(a)) => {
            let mut k = KeySet::new();
            k.add_hmac_secret(secret.as_bytes(), alg.unwrap_or(a));
            k
        }
        _ => return invalid,
    };
    let Some((header, payload)) = verified(token, &keys, alg) else { return invalid };
    let now_ns = || SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_nanos() as f64);
    let time = c.get("time").and_then(Json::as_f64).unwrap_or_else(now_ns) / 1e9;
    if payload.get("exp").and_then(Json::as_f64).is_some_and(|exp| exp <= time)
        || payload.get("nbf").and_then(Json::as_f64).is_some_and(|nbf| nbf > time)
    {
        return invalid;
    }
    if let Some(iss) = c.get("iss").and_then(Json::as_str)
        && payload.get("iss").and_then(Json::as_str) != Some(iss)
    {
        return invalid;
    }
    let token_aud: Vec<&str> = match payload.get("aud") {
        Some(Json::String(a)) => vec![a.as_str()],
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
        _ => Vec::new(),
    };
    match c.get("aud").and_then(Json::as_str) {
        Some(aud) if !token_aud.contains(&aud) => return invalid,
        None if !token_aud.is_empty() => return invalid,
        _ => {}
    }
    Value::from(json!([true, header, payload]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hs(claims: Json, secret: &str) -> String {
        let h = jsonwebtoken::Header::new(Algorithm::HS256);
        jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    #[test]
    fn decode_verify_follows_opas_rules() {
        let now = 1_700_000_000.0;
        let t = hs(json!({"sub": "u", "iss": "https://idp", "aud": "gw", "exp": now + 60.0}), "s3cret");
        let ok = |c: Json| to_json(&decode_verify(&t, &c)).unwrap()[0] == json!(true);
        let time = now * 1e9;
        assert!(ok(json!({"secret": "s3cret", "aud": "gw", "time": time})));
        assert!(ok(json!({"secret": "s3cret", "aud": "gw", "iss": "https://idp", "alg": "HS256", "time": time})));
        assert!(!ok(json!({"secret": "wrong", "aud": "gw", "time": time})));
        assert!(!ok(json!({"secret": "s3cret", "time": time})), "a token with aud needs an aud constraint");
        assert!(!ok(json!({"secret": "s3cret", "aud": "other", "time": time})));
        assert!(!ok(json!({"secret": "s3cret", "aud": "gw", "iss": "https://else", "time": time})));
        assert!(!ok(json!({"secret": "s3cret", "aud": "gw", "time": (now + 120.0) * 1e9})), "expired");
        assert!(!ok(json!({"secret": "s3cret", "aud": "gw", "alg": "RS256", "time": time})));
        let v = to_json(&decode_verify(&t, &json!({"secret": "s3cret", "aud": "gw", "time": time}))).unwrap();
        assert_eq!(v[2]["sub"], "u");
    }

    #[test]
    fn verify_and_decode() {
        let t = hs(json!({"sub": "u"}), "k");
        let mut keys = KeySet::new();
        keys.add_hmac_secret(b"k", Algorithm::HS256);
        assert!(verified(&t, &keys, Some(Algorithm::HS256)).is_some());
        assert!(verified(&t, &keys, Some(Algorithm::HS384)).is_none());
        let d = to_json(&decode(&t).unwrap()).unwrap();
        assert_eq!((d[0]["alg"].as_str(), d[1]["sub"].as_str()), (Some("HS256"), Some("u")));
        assert!(decode("a.b").is_err());
        // A JWK given as `cert`.
        let jwk = r#"{"kty": "oct", "k": "aw", "alg": "HS256"}"#;
        assert_eq!(public_keys(jwk, Algorithm::HS256).len(), 1);
    }
}
