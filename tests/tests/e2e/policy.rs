//! RBAC/ABAC route rules decided in Envoy (wasm) and in the sidecar (ext_authz), with the same
//! machine-readable 403s.

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_kid, user_claims};
use serde_json::{Value, json};

use super::client::{bearer, get};

fn routes() -> Value {
    json!([
        {"id": "docs", "prefix": "/api/rag/public", "public": true},
        {"id": "models-admin", "prefix": "/api/models/admin", "rolesAnyOf": ["admin"]},
        {"id": "lab", "template": "/api/lims/labs/{lab}/**", "bind": {"lab": "labs"}},
        {"id": "tes-internal", "prefix": "/api/tes/internal", "serviceOnly": true},
        {"id": "gold", "prefix": "/api/tools/premium", "claims": [{"claim": "tier", "equals": "gold"}], "scopes": ["tools:run"]}
    ])
}

fn token(sub: &str, roles: &[&str], extra: Value) -> String {
    let mut c = user_claims(sub, &format!("{sub}@lab.example"), roles);
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    bearer(&sign_kid(&c, DEV_KID).unwrap())
}

async fn check(stack: &Stack) {
    let admin = token("u-admin", &["admin"], json!({}));
    let user = token("u-user", &["user"], json!({"labs": ["l1"]}));
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, u16, &'a str);
    let cases: Vec<Case> = vec![
        ("/api/models/admin/x", vec![("authorization", &admin)], 200, ""),
        ("/api/models/admin/x", vec![("authorization", &user)], 403, "missing_role"),
        ("/api/lims/labs/l1/samples", vec![("authorization", &user)], 200, ""),
        ("/api/lims/labs/l2/samples", vec![("authorization", &user)], 403, "tenant_mismatch"),
        ("/api/tes/internal/x", vec![("authorization", &user)], 403, "service_only"),
        ("/api/tools/premium", vec![("authorization", &user)], 403, "missing_scope"),
        ("/api/models/admin/x", vec![("x-api-key", "demo-api-key-bob")], 403, "missing_role"),
        ("/api/models/admin/x", vec![("x-api-key", "demo-api-key-alice")], 200, ""),
    ];
    for (path, headers, status, code) in cases {
        let r = get(stack, path, &headers).await;
        assert_eq!(r.status, status, "{path} {headers:?}: {}", r.json);
        if status == 403 {
            assert_eq!(r.error(), code, "{path}");
            assert!(!r.json.to_string().contains("l1"), "a 403 must not echo claim values: {}", r.json);
        }
    }
    let svc = token("svc-tes", &[], json!({"svc": "tes"}));
    assert_eq!(get(stack, "/api/tes/internal/x", &[("authorization", &svc)]).await.status, 200);
    let gold = token("u-gold", &["user"], json!({"tier": "gold", "scope": "tools:run"}));
    assert_eq!(get(stack, "/api/tools/premium", &[("authorization", &gold)]).await.status, 200);

    // endpoint_permissions: the token itself limits where it may go.
    let limited = token("u-limited", &["user"], json!({"endpoint_permissions": ["/api/tools/**"]}));
    assert_eq!(get(stack, "/api/tools/run", &[("authorization", &limited)]).await.status, 200);
    let r = get(stack, "/api/rag/q", &[("authorization", &limited)]).await;
    assert_eq!((r.status, r.error()), (403, "endpoint_not_permitted"));

    // A public route: no credential needed, and client-sent identity headers still removed.
    let r = get(stack, "/api/rag/public/docs", &[("x-user-id", "u-admin"), ("x-internal-service", "tes")]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!((r.upstream("x-user-id"), r.upstream("x-internal-service")), (&Value::Null, &Value::Null));
}

/// Polls until `path` answers `status` for `auth` (a reload takes up to ~1 s to be read).
async fn until_status(stack: &Stack, path: &str, auth: &str, status: u16) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = get(stack, path, &[("authorization", auth)]).await;
        if r.status == status {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{path} still {} after reload: {}", r.status, r.json);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Hot reload: a new policy changes verdicts without restarting Envoy or the sidecar; a broken
/// file is refused and the previous verdicts stay; deny-by-default.
async fn hot_reload(stack: &Stack) {
    let user = token("u-user", &["user"], json!({"labs": ["l1"]}));
    assert_eq!(get(stack, "/api/models/admin/x", &[("authorization", &user)]).await.status, 403);
    let mut relaxed = routes();
    relaxed[1]["rolesAnyOf"] = json!(["admin", "user"]);
    stack.write_policy(&json!({ "routes": relaxed })).unwrap();
    until_status(stack, "/api/models/admin/x", &user, 200).await;

    stack.write_policy_text("routes: [ {id: broken").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(get(stack, "/api/models/admin/x", &[("authorization", &user)]).await.status, 200, "last good policy");
    let metrics = stack
        .client
        .get(format!("http://127.0.0.1:{}/metrics", stack.ports.sidecar_admin))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("authz_policy_reloads_total{result=\"error\"} 1"), "{metrics}");

    stack.write_policy(&json!({"defaultAction": "deny", "routes": [{"id": "tools", "prefix": "/api/tools"}]})).unwrap();
    until_status(stack, "/api/rag/x", &user, 403).await;
    let r = get(stack, "/api/rag/x", &[("authorization", &user)]).await;
    assert_eq!(r.error(), "no_matching_rule");
    assert_eq!(get(stack, "/api/tools/x", &[("authorization", &user)]).await.status, 200);
    assert_eq!(get(stack, "/health", &[]).await.status, 200, "always-public paths stay public");
}

/// A Rego rule, evaluated by the sidecar with the OPA-Envoy-shaped input plus the identity.
async fn rego(stack: &Stack) {
    let module = r#"package gateway.samples
default allow := false
allow if input.attributes.request.http.method == "GET"
allow if {
  input.attributes.request.http.method == "POST"
  "lab-admin" in input.identity.roles
  input.parsed_path[2] == "samples"
}
"#;
    let mut rules = routes();
    rules
        .as_array_mut()
        .unwrap()
        .insert(0, json!({"id": "samples", "prefix": "/api/lims/samples", "rego": "data.gateway.samples.allow"}));
    stack.write_policy(&json!({"routes": rules, "regoModules": {"samples.rego": module}})).unwrap();
    let user = token("u-user", &["user"], json!({}));
    let lab_admin = token("u-la", &["lab-admin"], json!({}));
    // The new policy is in force once POST by a plain user is refused by the rule.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r =
            super::client::request(stack, reqwest::Method::POST, "/api/lims/samples/1", &[("authorization", &user)])
                .await;
        if r.status == 403 {
            assert_eq!(r.error(), "policy_denied", "{}", r.json);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rego policy not applied: {} {}", r.status, r.json);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(stack, "/api/lims/samples/1", &[("authorization", &user)]).await.status, 200);
    let r =
        super::client::request(stack, reqwest::Method::POST, "/api/lims/samples/1", &[("authorization", &lab_admin)])
            .await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-la")), "{}", r.json);
}

async fn start(mode: Mode) -> Stack {
    let mut opts = Options::test(mode).unwrap();
    opts.routes = routes();
    Stack::start(opts).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_in_the_wasm_filter() {
    let stack = start(Mode::Wasm).await;
    let before = stack.envoy_stat("authz_filter.callouts").await.unwrap_or(0);
    check(&stack).await;
    // Only the two API-key requests needed the sidecar; every JWT rule was decided in Envoy.
    assert_eq!(stack.envoy_stat("authz_filter.callouts").await.unwrap_or(0) - before, 2);
    rego(&stack).await;
    let updates = stack.envoy_stat("authz_filter.policy_updates").await.unwrap_or(0);
    hot_reload(&stack).await;
    assert!(stack.envoy_stat("authz_filter.policy_updates").await.unwrap_or(0) > updates, "pushed to the filters");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_in_the_sidecar() {
    let stack = start(Mode::ExtAuthz).await;
    check(&stack).await;
    rego(&stack).await;
    hot_reload(&stack).await;
}
