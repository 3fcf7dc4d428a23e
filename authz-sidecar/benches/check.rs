//! Criterion benchmark of the sidecar's `Check` handler with a warm identity cache (what
//! Envoy's native ext_authz pays on every request, and the filter on each callout):
//! `cargo bench -p authz-sidecar --bench check`. Also a route decided by a tutorial-sized
//! OPA-Envoy policy (`sidecar_check_rego_warm`), and that policy's evaluation alone
//! (`rego_decision`: the input document built and the rule evaluated).
//!
//! The handler is called directly (no gRPC transport): request decoding into headers,
//! sanitising, the credential, the revocation check, the cache hit, policy and the response.
//! The backends are the in-memory ones (`backend::memory`); the warm path touches none of them.

// Fixture setup may fail loudly: this is a benchmark, not a request path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;

use authz_sidecar::backend::memory::MemoryAuth;
use authz_sidecar::check::testing::InMemorySidecar;
use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::ext_authz::v3::pb::CheckRequest;
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
/// The OPA-Envoy tutorial's shape: a default deny, a few method/path/role rules, a claim.
const REGO_POLICY: &str = r#"
routes:
  - id: tools
    template: /api/tools/**
    rego: envoy/authz/allow
regoModules:
  envoy.rego: |
    package envoy.authz
    import rego.v1
    default allow := false
    allow if {
      input.attributes.request.http.method == "GET"
      input.parsed_path[0] == "api"
      glob.match("tools*", [], input.parsed_path[1])
      "user" in input.identity.roles
    }
    allow if {
      input.attributes.request.http.method == "POST"
      "admin" in input.identity.roles
    }
    allow if {
      input.identity.claims.email == "root@lab.example"
    }
"#;
const SETTINGS: &str = "jwt:\n  issuers: [https://auth.bench]\n  audiences: [gateway]\n";

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
    let svc =
        rt.block_on(async { InMemorySidecar::with_policy(POLICY, SETTINGS, SECRET, MemoryAuth::default()) }).unwrap();
    let req = request(&token);
    // The first call verifies and caches.
    let first = rt.block_on(svc.check(req.clone())).unwrap();
    assert_eq!(first.status.map(|s| s.code), Some(0), "the bench request must be allowed");
    c.bench_function("sidecar_check_warm", |b| b.iter(|| rt.block_on(svc.check(black_box(req.clone()))).unwrap()));

    let rego = rt
        .block_on(async { InMemorySidecar::with_policy(REGO_POLICY, SETTINGS, SECRET, MemoryAuth::default()) })
        .unwrap();
    let first = rt.block_on(rego.check(req.clone())).unwrap();
    assert_eq!(first.status.map(|s| s.code), Some(0), "the Rego policy must allow the bench request");
    c.bench_function("sidecar_check_rego_warm", |b| {
        b.iter(|| rt.block_on(rego.check(black_box(req.clone()))).unwrap())
    });

    let policy = rego.decider.policy.current();
    let id = authz_core::Identity::from_claims(serde_json::from_value(claims).unwrap()).unwrap();
    let headers: Vec<(String, String)> =
        [("authorization", format!("Bearer {token}")), ("accept", "application/json".into())]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
    let attrs = authz_sidecar::check::rego_input::Attributes::default();
    c.bench_function("rego_decision", |b| {
        b.iter(|| {
            let input = authz_sidecar::check::rego_input::build(
                &attrs,
                "GET",
                "/api/tools/run?x=1",
                &headers,
                b"",
                Some(&id),
                false,
            );
            policy.rego_decide("data.envoy.authz.allow", black_box(input)).unwrap()
        })
    });
}

criterion_group!(benches, check);
criterion_main!(benches);
