//! Two identity providers on one gateway, in both modes: the platform's auth service (the
//! default provider) and a second issuer with its own key-set server, shaped like a Kubernetes
//! service-account issuer (OpenID Connect discovery, `kubernetes.io` claims). Each token is
//! accepted only with its own provider's keys and issuer, on the routes that name its provider.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use authz_e2e::auth_standin::public_jwk;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{self, DEV_PRIVATE_PEM, DEV2_PRIVATE_PEM, sign_kid};
use axum::routing::get as route_get;
use serde_json::{Value, json};

use super::client::{bearer, get};
use super::identity::{callouts, claims};

/// A second identity provider: a discovery document naming its JWKS, and one RS256 key
/// (`partner-1`, the development rotation key, which the auth service does not publish).
struct KeySetServer {
    url: String,
    fetches: Arc<AtomicU64>,
}

async fn key_set_server() -> KeySetServer {
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut jwk = serde_json::to_value(public_jwk("dev-2").unwrap()).unwrap();
    jwk["kid"] = json!("partner-1");
    let jwks = json!({"keys": [jwk]}).to_string();
    let discovery = json!({
        "issuer": url, "jwks_uri": format!("{url}/openid/v1/jwks"),
        "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    })
    .to_string();
    let fetches = Arc::new(AtomicU64::new(0));
    let counted = Arc::clone(&fetches);
    let app = axum::Router::new()
        .route("/.well-known/openid-configuration", route_get(move || async move { discovery }))
        .route(
            "/openid/v1/jwks",
            route_get(move || {
                counted.fetch_add(1, Ordering::Relaxed);
                async move { jwks }
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await });
    KeySetServer { url, fetches }
}

/// A projected service-account token's claims (as the kubelet mounts them).
fn service_account(issuer: &str) -> Value {
    let now = tokens::now();
    json!({
        "iss": issuer, "sub": "system:serviceaccount:tes:runner", "aud": ["gateway-internal"],
        "exp": now + 600, "iat": now - 5, "nbf": now - 5,
        "kubernetes.io": {
            "namespace": "tes",
            "serviceaccount": {"name": "runner", "uid": "0d3f6a1e-8c54-4a53-a0a2-9b1f2c3d4e5f"},
            "pod": {"name": "runner-7d9f", "uid": "5b2c9e1a-1f0b-4f7e-8e8e-0a1b2c3d4e5f"},
        },
    })
}

async fn two_providers(mode: Mode) {
    let idp = key_set_server().await;
    let mut opts = Options::test(mode).unwrap();
    opts.routes = json!([
        {"id": "internal", "prefix": "/api/tools/internal", "providers": ["kubernetes"], "serviceOnly": true},
        {"id": "either", "prefix": "/api/tools/either", "providers": ["default", "kubernetes"]},
        {"id": "tools", "prefix": "/api/tools"},
    ]);
    opts.sidecar_extra = format!(
        "providers:\n  - name: kubernetes\n    issuer: {url}\n    audiences: [gateway-internal]\n    \
         keys: {{discovery: {url}, minRefreshInterval: 1s}}\n    \
         tokenSources: [{{header: x-service-token}}]\n    serviceClaim: /kubernetes.io/serviceaccount/name\n    \
         claimToHeaders: [{{claim: /kubernetes.io/namespace, header: x-service-namespace}}]\n",
        url = idp.url
    );
    let stack = Stack::start(opts).await.unwrap();
    let sa = tokens::sign_with(&service_account(&idp.url), Some("partner-1"), DEV2_PRIVATE_PEM).unwrap();
    let user = sign_kid(&claims("u-user"), "dev-1").unwrap();
    let forged_namespace = ("x-service-namespace", "kube-system");

    // Its tokens, with its keys, where a rule names it; the service from its service claim.
    let r = get(&stack, "/api/tools/internal/x", &[("authorization", &bearer(&sa)), forged_namespace]).await;
    assert_eq!(r.status, 200, "{mode:?}: {}", r.json);
    assert_eq!(r.upstream("x-user-id").as_str(), Some("system:serviceaccount:tes:runner"));
    assert_eq!(r.upstream("x-internal-service").as_str(), Some("runner"), "{mode:?}: {}", r.json);
    assert_eq!(r.upstream("x-service-namespace").as_str(), Some("tes"), "{mode:?}: the token's, not the client's");
    assert!(r.upstream("authorization").is_null(), "{mode:?}: the token does not go on");
    // From its own header too, which does not go on either.
    let r = get(&stack, "/api/tools/either/x", &[("x-service-token", &sa)]).await;
    assert_eq!((r.status, r.upstream("x-internal-service").as_str()), (200, Some("runner")), "{mode:?}: {}", r.json);
    assert!(r.upstream("x-service-token").is_null(), "{mode:?}");
    if mode == Mode::Wasm {
        // Its keys are pushed to the filter like the default provider's: no callout.
        let before = callouts(&stack).await;
        assert_eq!(get(&stack, "/api/tools/either/y", &[("x-service-token", &sa)]).await.status, 200);
        assert_eq!(callouts(&stack).await, before, "verified inside Envoy");
    }
    // The default provider's token where only the other is named, and the reverse.
    let r = get(&stack, "/api/tools/internal/x", &[("authorization", &bearer(&user))]).await;
    assert_eq!((r.status, r.error()), (401, "token_wrong_issuer"), "{mode:?}");
    let r = get(&stack, "/api/tools/k", &[("authorization", &bearer(&sa))]).await;
    assert_eq!((r.status, r.error()), (401, "token_wrong_issuer"), "{mode:?}");
    // Both where a rule names both; the default provider's `svc`-less user is no service.
    let r = get(&stack, "/api/tools/either/x", &[("authorization", &bearer(&user)), forged_namespace]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-user")), "{mode:?}");
    assert!(r.upstream("x-service-namespace").is_null(), "{mode:?}: a client's copy of a mapped header is stripped");
    // Each issuer's tokens only with its own keys: its issuer with the auth service's key, and
    // the auth service's issuer with its key.
    let forged = tokens::sign_with(&service_account(&idp.url), Some("dev-1"), DEV_PRIVATE_PEM).unwrap();
    let r = get(&stack, "/api/tools/internal/x", &[("authorization", &bearer(&forged))]).await;
    assert_eq!((r.status, r.error()), (401, "token_unknown_key"), "{mode:?}");
    let crossed = tokens::sign_with(&claims("u-crossed"), Some("partner-1"), DEV2_PRIVATE_PEM).unwrap();
    let r = get(&stack, "/api/tools/k", &[("authorization", &bearer(&crossed))]).await;
    assert_eq!((r.status, r.error()), (401, "token_unknown_key"), "{mode:?}");
    // The audience is its own.
    let mut other_aud = service_account(&idp.url);
    other_aud["aud"] = json!(["gateway"]);
    let t = tokens::sign_with(&other_aud, Some("partner-1"), DEV2_PRIVATE_PEM).unwrap();
    let r = get(&stack, "/api/tools/internal/x", &[("authorization", &bearer(&t))]).await;
    assert_eq!((r.status, r.error()), (401, "token_wrong_audience"), "{mode:?}");

    assert!(idp.fetches.load(Ordering::Relaxed) > 0, "its keys came from its own server");
    let ready: Value = reqwest::get(format!("http://127.0.0.1:{}/readyz", stack.ports.sidecar_admin))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["providers"]["kubernetes"]["ready"], true, "{ready}");
    let metrics = stack.sidecar_metrics().await.unwrap();
    assert!(metrics.contains(r#"authz_jwks_fetches_total{provider="kubernetes",result="ok""#), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_providers_in_both_modes() {
    two_providers(Mode::Wasm).await;
    two_providers(Mode::ExtAuthz).await;
}
