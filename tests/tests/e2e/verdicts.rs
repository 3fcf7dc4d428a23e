//! The verdicts every gateway mode must give, run against a live stack.

use authz_e2e::stack::Stack;
use authz_e2e::tokens::{
    self, AUDIENCE, DEV_JWT_SECRET, DEV_KID, ISSUER, OTHER_PRIVATE_PEM, sign_hs256, sign_rs256, sign_with, unsigned,
    user_claims,
};
use serde_json::{Value, json};

use super::client::{bearer, get, is_uuid};

fn alice() -> Value {
    user_claims("u-alice", "alice@lab.example", &["admin", "user"])
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

/// A valid token reaches the upstream with the right identity and a UUID trace id that is
/// echoed on the response; client-sent identity headers are replaced or removed.
pub async fn valid_token_and_identity_headers(stack: &Stack) {
    let token = sign_rs256(&alice(), Some(DEV_KID)).unwrap();
    let auth = bearer(&token);
    let r = get(
        stack,
        "/api/tools/run?x=1",
        &[
            ("authorization", &auth),
            ("x-user-id", "u-admin"),
            ("x-user-roles", "superuser"),
            ("x-internal-service", "billing"),
            ("x-quota-lease", "forged"),
        ],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["service"], "toolserver");
    assert_eq!(r.upstream("x-user-id"), "u-alice");
    assert_eq!(r.upstream("x-user-email"), "alice@lab.example");
    assert_eq!(r.upstream("x-user-roles"), "admin,user");
    assert_eq!(r.upstream("x-internal-service"), &Value::Null);
    assert_eq!(r.upstream("x-quota-lease"), &Value::Null);
    let trace = r.upstream("x-trace-id").as_str().unwrap_or_default().to_string();
    assert!(is_uuid(&trace), "trace id {trace:?}");
    assert_eq!(r.header("x-trace-id"), Some(trace.as_str()), "trace id echoed on the response");

    // Every route reaches its own service.
    for (path, service) in [
        ("/api/workbench/x", "workbench"),
        ("/api/tes/v1/tasks", "tes"),
        ("/api/models", "model-registry"),
        ("/api/rag/q", "rag"),
        ("/api/lims/labs/l1", "lims"),
    ] {
        let r = get(stack, path, &[("authorization", &auth)]).await;
        assert_eq!((r.status, r.json["service"].as_str()), (200, Some(service)), "{path}");
    }

    // The second request is served from the cache and gets the same identity.
    let again = get(stack, "/api/tools/run", &[("authorization", &auth)]).await;
    assert_eq!(again.upstream("x-user-id"), "u-alice");
    assert_ne!(again.header("x-trace-id"), Some(trace.as_str()), "a new trace id per request");
}

/// The platform's kid-less HS256 tokens (JWT_SECRET) are accepted.
pub async fn hs256_platform_token(stack: &Stack) {
    let token = sign_hs256(&user_claims("u-hs", "hs@lab.example", &["user"]), DEV_JWT_SECRET).unwrap();
    let r = get(stack, "/api/rag/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.upstream("x-user-id"), "u-hs");
}

/// Trace ids: a well-formed incoming one is kept, a W3C traceparent is honoured, junk replaced.
pub async fn trace_ids(stack: &Stack) {
    let auth = bearer(&sign_rs256(&alice(), Some(DEV_KID)).unwrap());
    let id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let r = get(stack, "/api/tools/t", &[("authorization", &auth), ("x-trace-id", id)]).await;
    assert_eq!((r.upstream("x-trace-id").as_str(), r.header("x-trace-id")), (Some(id), Some(id)));
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = get(stack, "/api/tools/t", &[("authorization", &auth), ("traceparent", tp)]).await;
    assert_eq!(r.upstream("x-trace-id"), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736");
    let r = get(stack, "/api/tools/t", &[("authorization", &auth), ("x-trace-id", "not-a-uuid")]).await;
    let got = r.upstream("x-trace-id").as_str().unwrap_or_default();
    assert!(is_uuid(got) && got != "not-a-uuid", "{got}");
}

/// Refused tokens: 401, JSON body with a stable code and the trace id, and a challenge.
pub async fn refused_tokens(stack: &Stack) {
    let now = tokens::now();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no credential", None, "missing_credential"),
        (
            "expired",
            Some(sign_rs256(&with(alice(), "exp", json!(now - 3600)), Some(DEV_KID)).unwrap()),
            "token_expired",
        ),
        (
            "wrong issuer",
            Some(sign_rs256(&with(alice(), "iss", json!("https://evil.example")), Some(DEV_KID)).unwrap()),
            "token_wrong_issuer",
        ),
        (
            "wrong audience",
            Some(sign_rs256(&with(alice(), "aud", json!("billing-api")), Some(DEV_KID)).unwrap()),
            "token_wrong_audience",
        ),
        ("bad signature", Some(sign_with(&alice(), Some(DEV_KID), OTHER_PRIVATE_PEM).unwrap()), "token_bad_signature"),
        ("alg none", Some(unsigned(&alice())), "token_unsupported_alg"),
        ("garbage", Some("not.a.jwt".into()), "token_malformed"),
        (
            "HS256 with a wrong secret",
            Some(sign_hs256(&alice(), "some-other-secret-of-length").unwrap()),
            "token_bad_signature",
        ),
    ];
    for (name, token, code) in cases {
        let auth = token.as_deref().map(bearer);
        let mut headers = vec![("x-user-id", "u-admin")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        let r = get(stack, "/api/tools/x", &headers).await;
        assert_eq!(r.status, 401, "{name}: {}", r.json);
        assert_eq!(r.error(), code, "{name}: {}", r.json);
        assert_eq!(r.header("content-type"), Some("application/json"), "{name}");
        assert!(r.header("www-authenticate").is_some_and(|c| c.starts_with("Bearer")), "{name}");
        let trace = r.json["trace_id"].as_str().unwrap_or_default();
        assert!(is_uuid(trace), "{name}: trace_id {trace:?}");
        assert_eq!(r.header("x-trace-id"), Some(trace), "{name}");
    }
    let r = get(stack, "/api/tools/x", &[("authorization", "Basic dXNlcjpwdw==")]).await;
    assert_eq!((r.status, r.error()), (401, "unsupported_auth_scheme"));
    let r = get(stack, "/api/tools/x", &[("authorization", "Bearer")]).await;
    assert_eq!((r.status, r.error()), (401, "malformed_credential"));
    let _ = (ISSUER, AUDIENCE);
}

/// Opaque API keys go through the sidecar's introspection.
pub async fn api_keys(stack: &Stack) {
    let r = get(stack, "/api/tes/v1/tasks", &[("x-api-key", "demo-api-key-bob"), ("x-user-id", "u-alice")]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.upstream("x-user-id"), "u-bob");
    assert!(is_uuid(r.upstream("x-trace-id").as_str().unwrap_or_default()));
    let r = get(stack, "/api/tes/v1/tasks", &[("authorization", "ApiKey demo-api-key-alice")]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-alice")));
    let r = get(stack, "/api/tes/v1/tasks", &[("x-api-key", "nope")]).await;
    assert_eq!((r.status, r.error()), (401, "api_key_invalid"), "{}", r.json);
}

/// `GET /auth/verify` for nginx `auth_request`: 200 with identity headers, or 401.
pub async fn auth_verify_and_health(stack: &Stack) {
    let auth = bearer(&sign_rs256(&alice(), Some(DEV_KID)).unwrap());
    let r = get(stack, "/auth/verify", &[("authorization", &auth)]).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-user-id"), Some("u-alice"));
    assert_eq!(r.header("x-user-roles"), Some("admin,user"));
    let r = get(stack, "/auth/verify", &[("x-user-id", "u-admin")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("x-user-id"), None);
    let r = get(stack, "/health", &[("x-user-id", "u-admin")]).await;
    assert_eq!((r.status, r.json["status"].as_str()), (200, Some("ok")));
}

/// A token signed by a key the auth service does not publish: refused after the sidecar
/// re-checks the JWKS.
pub async fn unknown_kid(stack: &Stack) {
    let token = sign_with(&alice(), Some("rotated-away"), OTHER_PRIVATE_PEM).unwrap();
    let r = get(stack, "/api/tools/x", &[("authorization", &bearer(&token))]).await;
    assert_eq!((r.status, r.error()), (401, "token_unknown_key"), "{}", r.json);
}

/// All of the above, in order.
/// Spoofed identity headers in every shape (repeated, mixed case, names the gateway never
/// sets) and repeated or malformed trace ids, on the local path, the callout path (API key)
/// and for a token without an email: the upstream sees only what the gateway set, once.
pub async fn spoofed_headers_in_every_shape(stack: &Stack) {
    let no_email = json!({
        "sub": "u-noemail", "roles": ["user"], "iss": ISSUER, "aud": AUDIENCE,
        "iat": tokens::now(), "exp": tokens::now() + 900, "jti": "j-noemail"
    });
    let token_auth = bearer(&sign_rs256(&no_email, Some(DEV_KID)).unwrap());
    let valid_trace = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
    let spoofed: Vec<(&str, &str)> = vec![
        ("x-user-id", "u-admin"),
        ("X-User-Id", "u-root"),
        ("x-user-email", "admin@lab.example"),
        ("x-user-roles", "admin"),
        ("x-user-tenant", "lab-9"),
        ("x-internal-service", "billing"),
        ("X-Quota-Lease", "forged"),
        ("x-trace-id", valid_trace),
        ("x-trace-id", valid_trace),
    ];
    for (name, credential, user) in [
        ("token", ("authorization", token_auth.as_str()), "u-noemail"),
        ("api key", ("x-api-key", "demo-api-key-bob"), "u-bob"),
    ] {
        let mut headers = spoofed.clone();
        headers.push(credential);
        let r = get(stack, "/api/tools/spoof", &headers).await;
        assert_eq!(r.status, 200, "{name}: {}", r.json);
        assert_eq!(r.upstream("x-user-id"), user, "{name}: exactly the gateway's value, once");
        if name == "token" {
            assert_eq!(r.upstream("x-user-email"), &Value::Null, "{name}: no email claim, no header");
        }
        assert_ne!(r.upstream("x-user-roles"), "admin", "{name}");
        for gone in ["x-user-tenant", "x-internal-service", "x-quota-lease"] {
            assert_eq!(r.upstream(gone), &Value::Null, "{name}: {gone}");
        }
        let trace = r.upstream("x-trace-id").as_str().unwrap_or_default().to_string();
        assert!(is_uuid(&trace) && trace != valid_trace, "{name}: two client trace ids are as good as none: {trace:?}");
        assert_eq!(r.header("x-trace-id"), Some(trace.as_str()), "{name}");
    }
    // A malformed trace id next to a valid credential: replaced by one the gateway makes.
    let r = get(stack, "/api/tools/spoof", &[("authorization", &token_auth), ("x-trace-id", "../../etc/passwd; drop")])
        .await;
    let trace = r.upstream("x-trace-id").as_str().unwrap_or_default().to_string();
    assert!(r.status == 200 && is_uuid(&trace), "{}: {trace:?}", r.json);
}

pub async fn all(stack: &Stack) {
    valid_token_and_identity_headers(stack).await;
    spoofed_headers_in_every_shape(stack).await;
    hs256_platform_token(stack).await;
    trace_ids(stack).await;
    refused_tokens(stack).await;
    api_keys(stack).await;
    auth_verify_and_health(stack).await;
    unknown_kid(stack).await;
}
