//! `Check` as a table: the sidecar's real decision code on the in-memory backends, one row per
//! request, no Redis, no auth service.

use std::collections::HashMap;

use authz_core::Identity;
use authz_core::revocation::{Revocation, RevocationSet};
use envoy_types::ext_authz::v3::pb::HttpResponse;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use super::testing::InMemorySidecar;
use crate::backend::memory::MemoryAuth;
use crate::credentials::identity_cache::unix_now;

const SECRET: &str = "check-table-secret-0123456789";
const POLICY: &str = r#"
routes:
  - {id: tools, prefix: /api/tools}
  - {id: admin, prefix: /api/admin, rolesAnyOf: [admin]}
  - {id: session, prefix: /api/session, requireSession: true}
  - {id: delete, prefix: /api/delete, action: delete}
  - {id: tes, prefix: /ga4gh/tes, methods: [POST], quota: {resources: headers}}
"#;
const SETTINGS: &str = "publicPaths: [/health]\nquota:\n  perUser: {gpus: 1}\n";

fn sign(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET.as_bytes())).unwrap()
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    map.insert(":method".into(), method.into());
    map.insert(":path".into(), path.into());
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(AttrRequest {
                http: Some(HttpRequest {
                    method: method.into(),
                    path: path.into(),
                    headers: map,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// `200 <x-user-id>`, `<status> <code>`, or `unavailable`.
fn summary(r: Result<CheckResponse, tonic::Status>) -> String {
    let r = match r {
        Ok(r) => r,
        Err(s) if s.code() == tonic::Code::Unavailable => return "unavailable".into(),
        Err(s) => return format!("grpc {s}"),
    };
    match r.http_response {
        Some(HttpResponse::OkResponse(ok)) => {
            let user = ok.headers.iter().filter_map(|h| h.header.as_ref()).find(|h| h.key == "x-user-id");
            format!("200 {}", user.map_or("-", |h| h.value.as_str()))
        }
        Some(HttpResponse::DeniedResponse(d)) => {
            let body: serde_json::Value = serde_json::from_str(&d.body).unwrap_or_default();
            format!("{} {}", d.status.map_or(0, |s| s.code), body["error"].as_str().unwrap_or(""))
        }
        _ => "none".into(),
    }
}

/// Method, path, headers, the expected summary.
type Row<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);

#[tokio::test]
async fn check_table() {
    let now = unix_now();
    let alice = sign(json!({"sub": "alice", "roles": ["user"], "exp": now + 600, "sid": "s-alice", "jti": "j1"}));
    let bob = sign(json!({"sub": "bob", "roles": ["admin"], "exp": now + 600, "sid": "s-bob"}));
    let expired = sign(json!({"sub": "alice", "exp": now - 600}));
    let action = sign(json!({"sub": "alice", "action": "delete", "exp": now + 60, "jti": "act-1"}));
    let key_id =
        Identity::from_claims(serde_json::from_value(json!({"sub": "key-owner", "exp": now + 600})).unwrap()).unwrap();
    let auth = MemoryAuth::default().with_session(&alice).with_api_key("ak_good", key_id);
    let sidecar = InMemorySidecar::with_policy(POLICY, SETTINGS, SECRET, auth).unwrap();
    let (a, b, e) = (format!("Bearer {alice}"), format!("Bearer {bob}"), format!("Bearer {expired}"));
    let rows: Vec<Row> = vec![
        ("GET", "/health", vec![], "200 -"),
        ("GET", "/api/tools", vec![], "401 missing_credential"),
        ("GET", "/api/tools", vec![("authorization", &a)], "200 alice"),
        ("GET", "/api/tools", vec![("authorization", &e)], "401 token_expired"),
        ("GET", "/api/admin", vec![("authorization", &a)], "403 missing_role"),
        ("GET", "/api/admin", vec![("authorization", &b)], "200 bob"),
        ("GET", "/api/session", vec![("authorization", &a)], "200 alice"),
        ("GET", "/api/session", vec![("authorization", &b)], "401 session_invalid"),
        ("GET", "/api/tools", vec![("x-api-key", "ak_good")], "200 key-owner"),
        ("GET", "/api/tools", vec![("x-api-key", "ak_unknown")], "401 api_key_invalid"),
        ("GET", "/api/session", vec![("x-api-key", "ak_good")], "401 api_key_not_allowed"),
        ("DELETE", "/api/delete/1", vec![("authorization", &a)], "401 action_token_required"),
        ("DELETE", "/api/delete/1", vec![("authorization", &a), ("x-action-token", &action)], "200 alice"),
        // Single use: the same action token again.
        ("DELETE", "/api/delete/1", vec![("authorization", &a), ("x-action-token", &action)], "401 action_token_used"),
        ("POST", "/ga4gh/tes/v1/tasks", vec![("authorization", &a), ("x-compute-gpus", "1")], "200 alice"),
        // The first lease holds the user's one GPU.
        ("POST", "/ga4gh/tes/v1/tasks", vec![("authorization", &a), ("x-compute-gpus", "1")], "403 quota_exceeded"),
        ("GET", "/api/x/..;/admin", vec![("authorization", &a)], "400 path_parameters"),
    ];
    for (method, path, headers, want) in rows {
        assert_eq!(summary(sidecar.check(request(method, path, &headers)).await), want, "{method} {path} {headers:?}");
    }
    // A revocation: the session of alice's token.
    let mut set = RevocationSet::new();
    set.insert(&Revocation::Session { sid: "s-alice".into(), expires_at: now + 600 });
    sidecar.revocations.replace(set);
    assert_eq!(
        summary(sidecar.check(request("GET", "/api/tools", &[("authorization", &a)])).await),
        "401 token_revoked"
    );
}

#[tokio::test]
async fn outages_are_unavailable_not_denials() {
    let now = unix_now();
    let alice = sign(json!({"sub": "alice", "exp": now + 600, "sid": "s"}));
    let auth = MemoryAuth::down();
    let sidecar = InMemorySidecar::with_policy(POLICY, SETTINGS, SECRET, auth).unwrap();
    let a = format!("Bearer {alice}");
    assert_eq!(summary(sidecar.check(request("GET", "/api/session", &[("authorization", &a)])).await), "unavailable");
    assert_eq!(summary(sidecar.check(request("GET", "/api/tools", &[("x-api-key", "ak_x")])).await), "unavailable");
    // Verification needs neither: still decided.
    assert_eq!(summary(sidecar.check(request("GET", "/api/tools", &[("authorization", &a)])).await), "200 alice");
}
