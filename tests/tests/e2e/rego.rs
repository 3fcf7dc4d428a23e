//! Rego as OPA-Envoy users write it, end to end in both modes: policies written from
//! OPA-Envoy's documented input and decision semantics (not taken from its repository) with the
//! decision each must give. Path and method, query, header, body, source address (CIDR), a JWT
//! the policy verifies itself (`io.jwt.decode_verify`, before authentication), Basic auth read
//! by the policy, a v0 module, and OPA-Envoy's object decision.

use authz_e2e::auth_standin::public_jwk;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{AUDIENCE, sign_kid};
use serde_json::json;

use super::client::{bearer, get, post, request};
use super::identity::{claims, with};

fn modules() -> serde_json::Value {
    let jwks = json!({"keys": [public_jwk("dev-1").unwrap()]}).to_string();
    json!({
        // OPA-Envoy's default decision path, v1 syntax.
        "envoy.rego": "package envoy.authz\nimport rego.v1\n\ndefault allow := false\n\n\
            allow if {\n  input.attributes.request.http.method == \"GET\"\n  input.parsed_path == [\"api\", \"tools\", \"reports\", \"2024\"]\n  \
            input.parsed_query.format == [\"csv\"]\n}\n\n\
            allow if {\n  input.attributes.request.http.headers[\"x-team\"] == \"genomics\"\n  startswith(input.identity.user_id, \"u-\")\n  \
            \"user\" in input.identity.claims.roles\n}\n",
        // A v0 module, as most published material still is.
        "legacy.rego": "package legacy\n\ndefault allow = false\n\nallow {\n  input.parsed_path[2] == \"legacy\"\n  \
            input.identity.claims.lab == \"l1\"\n}\n",
        "net.rego": "package net\nimport rego.v1\n\nallow if net.cidr_contains(\"127.0.0.0/8\", input.attributes.source.address.socketAddress.address)\n\n\
            deny_loopback if net.cidr_contains(\"10.0.0.0/8\", input.attributes.source.address.socketAddress.address)\n",
        "jwt.rego": format!("package jwt\nimport rego.v1\n\njwks := `{jwks}`\n\ndefault allow := false\n\n\
            allow if {{\n  [valid, _, payload] := io.jwt.decode_verify(input.attributes.request.http.headers[\"x-id-token\"], {{\"cert\": jwks, \"aud\": \"{AUDIENCE}\"}})\n  \
            valid\n  payload.lab == \"l1\"\n}}\n"),
        "basic.rego": "package basic\nimport rego.v1\n\ndefault allow := false\n\n\
            allow if {\n  [scheme, credentials] := split(input.attributes.request.http.headers.authorization, \" \")\n  scheme == \"Basic\"\n  \
            base64.decode(credentials) == \"robot:s3cret\"\n}\n",
        "tes.rego": "package tes\nimport rego.v1\n\ndefault allow := false\n\nallow if input.parsed_body.name != \"forbidden\"\n",
        "object.rego": "package obj\nimport rego.v1\n\n\
            decision := {\"allowed\": true, \"headers\": {\"x-policy\": \"checked\"}, \"request_headers_to_remove\": [\"x-internal-debug\"], \
            \"response_headers_to_add\": {\"x-policy-response\": \"yes\"}} if input.parsed_query.ok == [\"1\"]\n\n\
            decision := {\"allowed\": false, \"http_status\": 418, \"body\": \"short and stout\", \"headers\": {\"x-why\": \"teapot\"}} if not input.parsed_query.ok\n",
    })
}

async fn conformance(mode: Mode) {
    let mut opts = Options::test(mode).unwrap();
    // Started without them (a rule naming Rego needs its modules), then written with them.
    let routes = json!([
        {"id": "reports", "prefix": "/api/tools/reports", "rego": "envoy/authz/allow"},
        {"id": "team", "prefix": "/api/tools/team", "rego": "envoy/authz/allow"},
        {"id": "legacy", "prefix": "/api/tools/legacy", "rego": "data.legacy.allow"},
        {"id": "cidr", "prefix": "/api/tools/cidr", "rego": "data.net.allow"},
        {"id": "cidr-10", "prefix": "/api/tools/ten", "rego": "data.net.deny_loopback"},
        {"id": "jwt", "prefix": "/api/tools/jwt", "public": true, "rego": "data.jwt.allow"},
        {"id": "basic", "prefix": "/api/tools/basic", "public": true, "rego": "data.basic.allow"},
        {"id": "object", "prefix": "/api/tools/object", "rego": "obj/decision"},
        {"id": "tes", "prefix": "/api/tes/v1/tasks", "methods": ["POST"], "quota": {"resources": "tes"}, "rego": "data.tes.allow"},
    ]);
    opts.sidecar_extra = "quota:\n  perUser: { gpus: 8, cpuCores: 64 }\n".into();
    let stack = Stack::start(opts).await.unwrap();
    stack.write_policy(&json!({"routes": routes, "regoModules": modules()})).unwrap();
    // The reload reaches the sidecar (and through it the filters).
    let mut ready = false;
    for _ in 0..100 {
        let t = bearer(&sign_kid(&claims("u-probe"), "dev-1").unwrap());
        // Refused only by the new policy (the first one lets any valid credential through).
        if get(&stack, "/api/tools/reports/2024?format=pdf", &[("authorization", &t)]).await.status == 403 {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "{mode:?}: the Rego policy never took effect:\n{}", stack.sidecar_log());
    let alice = bearer(&sign_kid(&with(claims("u-alice"), "lab", json!("l1")), "dev-1").unwrap());
    let bob = bearer(&sign_kid(&with(claims("u-bob"), "lab", json!("l2")), "dev-1").unwrap());
    let a = |h: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        h.iter().map(|(k, v)| (*k, v.to_string())).chain([("authorization", alice.clone())]).collect()
    };
    let status = |path: &'static str, h: Vec<(&'static str, String)>| {
        let stack = &stack;
        async move {
            let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(stack, path, &h).await
        }
    };
    // Path, method and query (OPA-Envoy's parsed_path and parsed_query).
    assert_eq!(status("/api/tools/reports/2024?format=csv", a(&[])).await.status, 200, "{mode:?}");
    assert_eq!(status("/api/tools/reports/2024?format=pdf", a(&[])).await.status, 403, "{mode:?}");
    assert_eq!(
        status("/api/tools/reports/2024/?format=csv", a(&[])).await.status,
        403,
        "{mode:?}: a trailing slash is another path"
    );
    let post_csv =
        request(&stack, reqwest::Method::POST, "/api/tools/reports/2024?format=csv", &[("authorization", &alice)])
            .await;
    assert_eq!((post_csv.status, post_csv.error()), (403, "policy_denied"), "{mode:?}");
    // A header, the identity and its full claim set (`roles`).
    assert_eq!(status("/api/tools/team/x", a(&[("x-team", "genomics")])).await.status, 200, "{mode:?}");
    assert_eq!(status("/api/tools/team/x", a(&[("x-team", "proteomics")])).await.status, 403, "{mode:?}");
    // v0 syntax, reading a claim.
    assert_eq!(status("/api/tools/legacy", a(&[])).await.status, 200, "{mode:?}");
    assert_eq!(get(&stack, "/api/tools/legacy", &[("authorization", &bob)]).await.status, 403, "{mode:?}");
    // The client's address (net.cidr_contains over attributes.source).
    assert_eq!(status("/api/tools/cidr", a(&[])).await.status, 200, "{mode:?}");
    assert_eq!(status("/api/tools/ten", a(&[])).await.status, 403, "{mode:?}");
    // Before authentication: the policy verifies a token itself, with no gateway credential.
    let id_token = |lab: &str| sign_kid(&with(claims("u-jwt"), "lab", json!(lab)), "dev-1").unwrap();
    assert_eq!(get(&stack, "/api/tools/jwt", &[("x-id-token", &id_token("l1"))]).await.status, 200, "{mode:?}");
    assert_eq!(get(&stack, "/api/tools/jwt", &[("x-id-token", &id_token("l2"))]).await.status, 403, "{mode:?}");
    let forged = format!("{}x", id_token("l1"));
    assert_eq!(get(&stack, "/api/tools/jwt", &[("x-id-token", &forged)]).await.status, 403, "{mode:?}");
    assert_eq!(get(&stack, "/api/tools/jwt", &[]).await.status, 403, "{mode:?}");
    // Basic auth, read by the policy (the gateway itself accepts no Basic credential).
    let basic = |c: &str| format!("Basic {}", base64_encode(c));
    assert_eq!(get(&stack, "/api/tools/basic", &[("authorization", &basic("robot:s3cret"))]).await.status, 200);
    assert_eq!(get(&stack, "/api/tools/basic", &[("authorization", &basic("robot:guess"))]).await.status, 403);
    // OPA-Envoy's object decision: headers to the upstream, one removed; a denial's own status,
    // body and headers.
    let ok = status("/api/tools/object?ok=1", a(&[("x-internal-debug", "1")])).await;
    assert_eq!(ok.status, 200, "{mode:?}");
    assert_eq!(ok.upstream("x-policy").as_str(), Some("checked"), "{mode:?}: {}", ok.json);
    assert!(ok.upstream("x-internal-debug").is_null(), "{mode:?}: {}", ok.json);
    assert_eq!(ok.header("x-policy-response"), Some("yes"), "{mode:?}: response_headers_to_add");
    assert!(ok.header("x-trace-id").is_some_and(|t| !t.contains(',')), "{mode:?}: one trace id on the response");
    let no = status("/api/tools/object", a(&[])).await;
    assert_eq!((no.status, no.header("x-why")), (418, Some("teapot")), "{mode:?}");
    // The body of a compute request (parsed_body).
    let task = |name: &str| json!({"name": name, "resources": {"cpu_cores": 1}}).to_string();
    let h = [("authorization", alice.as_str()), ("content-type", "application/json")];
    assert_eq!(post(&stack, "/api/tes/v1/tasks", &h, task("align")).await.status, 200, "{mode:?}");
    let r = post(&stack, "/api/tes/v1/tasks", &h, task("forbidden")).await;
    assert_eq!((r.status, r.error()), (403, "policy_denied"), "{mode:?}");
}

fn base64_encode(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opa_envoy_policies_decide_as_opa_documents_in_both_modes() {
    conformance(Mode::Wasm).await;
    conformance(Mode::ExtAuthz).await;
}
