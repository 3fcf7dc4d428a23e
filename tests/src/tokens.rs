//! Signing test and demo tokens with the development keys in `tests/fixtures`.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::Value;

/// The development signing key (RS256, kid `dev-1`). Protects nothing.
pub const DEV_PRIVATE_PEM: &str = include_str!("../fixtures/dev-rsa-private.pem");
/// The key a rotation moves to (RS256, kid `dev-2`).
pub const DEV2_PRIVATE_PEM: &str = include_str!("../fixtures/dev-rsa2-private.pem");
const EC256_PEM: &str = include_str!("../fixtures/dev-ec256-private.pem");
const EC384_PEM: &str = include_str!("../fixtures/dev-ec384-private.pem");
const ED25519_PEM: &str = include_str!("../fixtures/dev-ed25519-private.pem");

/// Every development signing key: `kid`, algorithm, PKCS#8 PEM. The RSA key serves several
/// algorithms under distinct `kid`s, because a JWK names exactly one algorithm.
pub const SIGNING_KEYS: &[(&str, Algorithm, &str)] = &[
    ("dev-1", Algorithm::RS256, DEV_PRIVATE_PEM),
    ("dev-rs384", Algorithm::RS384, DEV_PRIVATE_PEM),
    ("dev-rs512", Algorithm::RS512, DEV_PRIVATE_PEM),
    ("dev-ps256", Algorithm::PS256, DEV_PRIVATE_PEM),
    ("dev-ps384", Algorithm::PS384, DEV_PRIVATE_PEM),
    ("dev-ps512", Algorithm::PS512, DEV_PRIVATE_PEM),
    ("dev-es256", Algorithm::ES256, EC256_PEM),
    ("dev-es384", Algorithm::ES384, EC384_PEM),
    ("dev-eddsa", Algorithm::EdDSA, ED25519_PEM),
    ("dev-2", Algorithm::RS256, DEV2_PRIVATE_PEM),
];

/// The encoding key of a development `kid`.
pub fn encoding_key(kid: &str) -> anyhow::Result<(Algorithm, EncodingKey)> {
    authz_core::crypto::ensure_provider();
    let (_, alg, pem) =
        SIGNING_KEYS.iter().find(|(k, _, _)| *k == kid).ok_or_else(|| anyhow::anyhow!("no development key {kid:?}"))?;
    let key = match alg {
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes())?,
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes())?,
        _ => EncodingKey::from_rsa_pem(pem.as_bytes())?,
    };
    Ok((*alg, key))
}

/// Signs with the development key named `kid`, in that key's algorithm.
pub fn sign_kid(claims: &Value, kid: &str) -> anyhow::Result<String> {
    let (alg, key) = encoding_key(kid)?;
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    Ok(jsonwebtoken::encode(&h, claims, &key)?)
}
/// A key nobody trusts, for bad-signature cases.
pub const OTHER_PRIVATE_PEM: &str = include_str!("../fixtures/other-rsa-private.pem");
pub const DEV_KID: &str = "dev-1";
pub const ISSUER: &str = "https://auth.dev.local";
pub const AUDIENCE: &str = "platform-gateway";
/// The HS256 secret the demo stack sets as `JWT_SECRET`.
pub const DEV_JWT_SECRET: &str = "dev-only-hs256-secret-change-me";

pub fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Claims of a valid user token for `sub`, 15 minutes long.
pub fn user_claims(sub: &str, email: &str, roles: &[&str]) -> Value {
    let now = now();
    serde_json::json!({
        "sub": sub, "email": email, "roles": roles,
        "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "nbf": now, "exp": now + 900,
        "jti": uuid::Uuid::new_v4().to_string(),
        "sid": uuid::Uuid::new_v4().to_string(),
    })
}

/// RS256 with the development key and `kid`.
pub fn sign_rs256(claims: &Value, kid: Option<&str>) -> anyhow::Result<String> {
    sign_with(claims, kid, DEV_PRIVATE_PEM)
}

/// RS256 with an arbitrary PEM private key.
pub fn sign_with(claims: &Value, kid: Option<&str>, pem: &str) -> anyhow::Result<String> {
    authz_core::crypto::ensure_provider();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = kid.map(str::to_string);
    Ok(jsonwebtoken::encode(&h, claims, &EncodingKey::from_rsa_pem(pem.as_bytes())?)?)
}

/// HS256 without `kid`, as the platform's `JWT_SECRET` tokens are.
pub fn sign_hs256(claims: &Value, secret: &str) -> anyhow::Result<String> {
    authz_core::crypto::ensure_provider();
    Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))?)
}

/// A token with `alg: none` and an empty signature.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine as _;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.", b64(&serde_json::json!({"alg": "none", "typ": "JWT"})), b64(claims))
}
