//! Key sets as identity providers serve them, on the identity tests' stack (`identity::all`):
//! keys we cannot use next to usable ones, a document with none usable, tokens without `kid`,
//! ES512.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use authz_e2e::stack::{Mode, Stack};
use authz_e2e::tokens::{self, sign_kid};
use serde_json::Value;

use super::client::{bearer, get};
use super::identity::{callouts, claims};

/// Key sets as identity providers serve them: keys we cannot use are skipped (named in the
/// log, counted), the rest used; a document with no usable key keeps the last good set; a
/// token without `kid` is tried against the keys of its algorithm (as Envoy's `jwt_authn`).
pub async fn key_sets(stack: &Stack) {
    let state = &stack.auth.state;
    let fresh = |sub: &str| sign_kid(&claims(sub), "dev-1").unwrap();
    let mixed: Value = serde_json::from_str(include_str!("../../../authz-core/testdata/jwks_mixed.json")).unwrap();
    // Only the unusable ones (positions 5, 6, 8, 9, 10 of the fixture): X25519, a secret from a
    // URL, an encryption key, a bad encoding, an unknown `kty`.
    let unusable: Vec<Value> = [5, 6, 8, 9, 10].iter().map(|i| mixed["keys"][*i].clone()).collect();
    state.serve_extra_keys(unusable.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = stack.sidecar_metrics().await.unwrap_or_default();
        if metrics.lines().any(|l| l == r#"authz_jwks_keys_skipped{provider="default"} 5"#) {
            break;
        }
        assert!(Instant::now() < deadline, "skipped keys not counted:\n{metrics}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = stack.sidecar_log();
    assert!(log.contains("JWKS key skipped") && log.contains("x25519"), "the log names the key");
    assert!(log.contains("symmetric (oct) key served by a URL"), "a secret from a URL is refused with a warning");
    assert_eq!(get(stack, "/api/tools/k", &[("authorization", &bearer(&fresh("u-mixed")))]).await.status, 200);
    // Without `kid`, against the published keys (which all have one).
    let kidless = tokens::sign_rs256(&claims("u-kidless"), None).unwrap();
    let r = get(stack, "/api/tools/k", &[("authorization", &bearer(&kidless))]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-kidless")), "{}", r.json);
    // No usable key at all: the last good set stays (fresh tokens, so no cache answers).
    let published = state.published();
    for kid in &published {
        state.retire(kid);
    }
    let before = state.calls.jwks.load(Ordering::Relaxed);
    while state.calls.jwks.load(Ordering::Relaxed) < before + 2 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let r = get(stack, "/api/tools/k", &[("authorization", &bearer(&fresh("u-after-empty")))]).await;
    assert_eq!(r.status, 200, "the last good keys are kept: {}", r.json);
    for kid in &published {
        state.publish(kid);
    }
    state.serve_extra_keys(Vec::new());
}

/// ES512 (P-521): a key the identity provider publishes, and a token made with Python's
/// `cryptography` (it expires in 2036). The sidecar verifies with aws-lc; the filter, once the
/// key is pushed, with Envoy's own crypto (`verify_signature`), without a callout.
pub async fn es512(stack: &Stack) {
    let fixture: Value = serde_json::from_str(include_str!("../../../authz-core/testdata/es512.json")).unwrap();
    stack.auth.state.serve_extra_keys(vec![fixture["jwks"]["keys"][0].clone()]);
    let token = fixture["token"].as_str().unwrap();
    // Its `kid` is new: the sidecar fetches the keys for it at once.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = get(stack, "/api/tools/e", &[("authorization", &bearer(token))]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-es512")), "{}", r.json);
    if stack.opts.mode == Mode::Wasm {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = callouts(stack).await;
        let r = get(stack, "/api/tools/e", &[("authorization", &bearer(token))]).await;
        assert_eq!(r.status, 200);
        assert_eq!(callouts(stack).await, before, "ES512 verified inside Envoy");
    }
    let kidless = fixture["kidless"].as_str().unwrap();
    assert_eq!(get(stack, "/api/tools/e", &[("authorization", &bearer(kidless))]).await.status, 200);
    stack.auth.state.serve_extra_keys(Vec::new());
}
