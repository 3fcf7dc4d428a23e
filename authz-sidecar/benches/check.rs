//! Criterion benchmark of the sidecar's `Check` handler with a warm identity cache (what
//! Envoy's native ext_authz pays on every request, and the filter on each callout):
//! `cargo bench -p authz-sidecar --bench check`.
//!
//! The handler is called directly (no gRPC transport): request decoding into headers,
//! sanitising, the credential, the revocation check, the cache hit, policy and the response.
//! Redis points at a closed port, so a warm path that touched Redis would show as a timeout.

// Fixture setup may fail loudly: this is a benchmark, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use authz_core::ClaimsPolicy;
use authz_core::headers::StripRules;
use authz_core::revocation::RevocationSet;
use authz_sidecar::check::{AuthzService, Decider};
use authz_sidecar::config::QuotaConfig;
use authz_sidecar::failures::FailureLimiter;
use authz_sidecar::identity_cache::IdentityCache;
use authz_sidecar::introspect::{IntrospectionBudget, Introspector};
use authz_sidecar::keystore::KeyStore;
use authz_sidecar::metrics::Metrics;
use authz_sidecar::policy::{PolicyStore, parse};
use authz_sidecar::quota::Quota;
use authz_sidecar::quota::store::QuotaStore;
use authz_sidecar::redis_conn::RedisConn;
use authz_sidecar::redis_kv::RedisKv;
use authz_sidecar::revocations::RevocationHub;
use authz_sidecar::session::SessionChecker;
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use jsonwebtoken::{Algorithm, EncodingKey, Header};

const SECRET: &str = "bench-only-hs256-secret";
const POLICY: &str = r#"
routes:
  - id: tools
    template: /api/tools/**
    rolesAnyOf: [user, admin]
"#;

fn decider() -> Arc<Decider> {
    authz_core::crypto::ensure_provider();
    let metrics = Arc::new(Metrics::default());
    let http = reqwest::Client::new();
    let keys = Arc::new(KeyStore::new(
        http.clone(),
        "http://127.0.0.1:9/jwks".into(),
        Some(SECRET.into()),
        vec![Algorithm::HS256],
        Duration::from_secs(10),
        Arc::clone(&metrics),
    ));
    let redis = RedisConn::open("redis://127.0.0.1:9", false, Duration::from_millis(20)).unwrap();
    let quota = Arc::new(Quota::new(
        QuotaStore::new(redis.clone(), "authz:", Duration::from_millis(20)),
        QuotaConfig::default(),
        "tenant".into(),
        Arc::clone(&metrics),
    ));
    let kv = RedisKv::new(redis, "authz:".into(), Duration::from_millis(20), Arc::clone(&metrics));
    let revocations = Arc::new(RevocationHub::new(Arc::clone(&metrics)));
    revocations.replace(RevocationSet::new());
    let policy = parse(POLICY, "bench", &["/health".to_string()]).unwrap();
    Arc::new(Decider {
        keys,
        cache: IdentityCache::new(10_000, kv.clone(), Duration::from_secs(3600), Arc::clone(&metrics)),
        introspector: Introspector::new(
            http.clone(),
            "http://127.0.0.1:9",
            kv,
            Duration::from_secs(60),
            Duration::from_secs(10),
            Arc::clone(&metrics),
            IntrospectionBudget::new(32, 100, 50),
        ),
        sessions: SessionChecker::new(http, "http://127.0.0.1:9", Duration::from_secs(5), Arc::clone(&metrics)),
        claims: ClaimsPolicy {
            issuers: vec!["https://auth.bench".into()],
            audiences: vec!["gateway".into()],
            clock_skew_secs: 60,
        },
        strip: StripRules::new(vec!["x-quota-lease".into()]),
        policy: Arc::new(PolicyStore::new(policy)),
        revocations,
        metrics,
        quota,
        tenant_claim: "tenant".into(),
        action_jtis: None,
        api_key_format: Default::default(),
        failures: FailureLimiter::new(0, Duration::from_secs(60)),
    })
}

fn request(token: &str) -> CheckRequest {
    let headers: HashMap<String, String> = [
        (":method", "GET".to_string()),
        (":path", "/api/tools/run?x=1".to_string()),
        (":authority", "gateway.local".to_string()),
        ("user-agent", "bench/1.0".to_string()),
        ("accept", "application/json".to_string()),
        ("authorization", format!("Bearer {token}")),
        ("x-user-id", "spoofed".to_string()),
        ("x-request-id", "5c3b1e0a-3c8e-4f7e-9d6b-1a2b3c4d5e6f".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: "/api/tools/run?x=1".into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

fn check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let claims = serde_json::json!({
        "sub": "u-bench", "iss": "https://auth.bench", "aud": "gateway", "exp": now + 3600, "iat": now,
        "email": "bench@lab.example", "roles": ["user"], "jti": "j-1", "sid": "s-1"
    });
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes()))
            .unwrap();
    let svc = rt.block_on(async { AuthzService::new(decider()) });
    let req = request(&token);
    // The first call verifies and caches (its Redis write fails fast and is ignored).
    let first = rt.block_on(svc.check(tonic::Request::new(req.clone()))).unwrap().into_inner();
    assert_eq!(first.status.map(|s| s.code), Some(0), "the bench request must be allowed");
    c.bench_function("sidecar_check_warm", |b| {
        b.iter(|| rt.block_on(svc.check(tonic::Request::new(black_box(req.clone())))).unwrap())
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
