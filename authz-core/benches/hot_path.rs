//! Criterion benchmarks of the per-request functions (native, aws-lc backend):
//! `cargo bench -p authz-core --bench hot_path`.
//!
//! - `verify/<alg>`: signature and time checks of a token not in any cache (the miss path);
//! - `cache_hit`: the filter's hit path (keyed SipHash-128 of the token + one map lookup);
//! - `sanitize`, `credential`, `identity_headers`: the header work every request does;
//! - `revocation_check/<n>`: whether an identity is revoked, with n revocations held;
//! - `policy/<n>_rules`: route policy evaluation.

// Fixture setup may fail loudly: this is a benchmark, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use authz_core::authenticator::Authenticator;
use authz_core::headers::StripRules;
use authz_core::keys::VerifyKey;
use authz_core::token::verify_token_time;
use authz_core::{ClaimsPolicy, Identity, KeySet, credential, request};
use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};

const RSA: &str = include_str!("../../tests/fixtures/dev-rsa-private.pem");
const EC256: &str = include_str!("../../tests/fixtures/dev-ec256-private.pem");
const EC384: &str = include_str!("../../tests/fixtures/dev-ec384-private.pem");
const ED25519: &str = include_str!("../../tests/fixtures/dev-ed25519-private.pem");
const NOW: u64 = 1_700_000_000;

fn encoding(alg: Algorithm) -> EncodingKey {
    match alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef")
        }
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC256.as_bytes()).unwrap(),
        Algorithm::ES384 => EncodingKey::from_ec_pem(EC384.as_bytes()).unwrap(),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(ED25519.as_bytes()).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA.as_bytes()).unwrap(),
    }
}

fn claims() -> serde_json::Value {
    serde_json::json!({
        "sub": "u-bench", "iss": "https://auth.bench", "aud": "gateway", "exp": NOW + 900, "iat": NOW,
        "email": "bench@lab.example", "roles": ["user", "admin"], "jti": "j-1", "sid": "s-1"
    })
}

/// A token signed with `alg` and a key set that verifies it.
fn fixture(alg: Algorithm) -> (String, KeySet) {
    authz_core::crypto::ensure_provider();
    let enc = encoding(alg);
    let mut header = Header::new(alg);
    header.kid = Some("k".into());
    let token = jsonwebtoken::encode(&header, &claims(), &enc).unwrap();
    let jwk = Jwk::from_encoding_key(&enc, alg).unwrap();
    let mut keys = KeySet::new();
    keys.insert(VerifyKey { kid: Some("k".into()), alg, key: DecodingKey::from_jwk(&jwk).unwrap(), spki: None });
    (token, keys)
}

fn verify(c: &mut Criterion) {
    let policy = ClaimsPolicy::default();
    let mut group = c.benchmark_group("verify");
    for alg in [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ] {
        let (token, keys) = fixture(alg);
        assert!(verify_token_time(&token, &keys, &policy, NOW).is_ok());
        group.bench_function(format!("{alg:?}"), |b| {
            b.iter(|| verify_token_time(black_box(&token), &keys, &policy, NOW))
        });
    }
    group.finish();
}

fn hit_path(c: &mut Criterion) {
    let (token, keys) = fixture(Algorithm::RS256);
    let mut auth = Authenticator::new(ClaimsPolicy::default(), 10_000);
    auth.set_keys(keys);
    let _ = auth.authenticate(&token, NOW);
    c.bench_function("cache_hit", |b| b.iter(|| auth.authenticate(black_box(&token), NOW)));

    let headers: Vec<(String, Vec<u8>)> = [
        (":method", "GET"),
        (":path", "/api/tools/run?x=1"),
        (":authority", "gateway.local"),
        (":scheme", "http"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("authorization", "Bearer a.b.c"),
        ("x-user-id", "spoofed"),
        ("x-request-id", "5c3b1e0a-3c8e-4f7e-9d6b-1a2b3c4d5e6f"),
        ("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
    .collect();
    let rules = StripRules::default();
    c.bench_function("sanitize", |b| b.iter(|| request::sanitize(black_box(headers.clone()), &rules, || [7; 16])));
    c.bench_function("credential", |b| b.iter(|| credential::extract(black_box(&headers)).kind()));
    // The front-door checks every request pays before a rule is looked at.
    let target = "/api/tools/run/some/longer/path-segment?x=1&y=2";
    c.bench_function("path_guard", |b| {
        b.iter(|| {
            (authz_core::path_guard::check(black_box(target)).is_ok(), authz_core::path_guard::has_method_param(target))
        })
    });

    let id = Identity::from_claims(serde_json::from_value(claims()).unwrap()).unwrap();
    let verified = authz_core::authenticator::Verified::new(id, "t");
    c.bench_function("identity_headers", |b| b.iter(|| black_box(&verified).headers().count()));
}

/// Policy evaluation with `n` rules: the request matches the last rule (the worst case for a
/// first-match table) and passes its role, claim and binding checks.
fn policy(c: &mut Criterion) {
    use authz_core::claims::Scope;
    use authz_core::routes::{Matched, PolicyDocument, RouteTable};
    let id = {
        let mut claims: authz_core::claims::Claims = serde_json::from_value(claims()).unwrap();
        claims.extra.insert("labs".into(), serde_json::json!(["l1", "l2", "l3"]));
        claims.extra.insert("tier".into(), serde_json::json!("gold"));
        Identity::from_claims(claims).unwrap()
    };
    let scope = Scope::default();
    let mut group = c.benchmark_group("policy");
    for n in [10usize, 200, 2000] {
        let routes: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                serde_json::json!({
                    "id": format!("r{i}"),
                    "template": format!("/api/svc{i}/labs/{{lab}}/**"),
                    "methods": ["GET", "POST"],
                    "rolesAnyOf": ["admin", "scientist"],
                    "claims": [{"claim": "tier", "oneOf": ["gold", "platinum"]}],
                    "bind": {"lab": "labs"}
                })
            })
            .collect();
        let doc: PolicyDocument = serde_json::from_value(serde_json::json!({ "routes": routes })).unwrap();
        let table = RouteTable::from_document(vec!["/health".into()], vec![], doc).unwrap();
        let path = format!("/api/svc{}/labs/l2/samples/7", n - 1);
        group.bench_function(format!("{n}_rules"), |b| {
            b.iter(|| match table.find("GET", black_box(&path)) {
                Matched::Protected(Some(r)) => r.check(&scope, &id, None, &path, NOW).is_ok(),
                _ => false,
            })
        });
    }
    group.finish();
}

/// The revocation check every request makes, against sets of 0, 10k and 100k token
/// revocations (plus one session and one user revocation, so every map is consulted).
fn revocation(c: &mut Criterion) {
    use authz_core::revocation::{Revocation, RevocationSet};
    let id = Identity::from_claims(serde_json::from_value(claims()).unwrap()).unwrap();
    let mut group = c.benchmark_group("revocation_check");
    for n in [0usize, 10_000, 100_000] {
        let mut set = RevocationSet::new();
        for i in 0..n {
            set.insert(&Revocation::Token { jti: format!("jti-{i}"), expires_at: NOW + 900 });
        }
        if n > 0 {
            set.insert(&Revocation::Session { sid: "other".into(), expires_at: NOW + 900 });
            set.insert(&Revocation::User { sub: "someone-else".into(), before: NOW, expires_at: NOW + 900 });
        }
        assert!(!set.is_revoked(&id));
        group.bench_function(format!("{n}"), |b| b.iter(|| set.is_revoked(black_box(&id))));
    }
    group.finish();
}

criterion_group!(benches, verify, hit_path, policy, revocation);
criterion_main!(benches);
