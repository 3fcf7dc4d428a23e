//! Anonymous garbage costs little (issue 15): what junk credentials may cost the sidecar and
//! the auth service is bounded, in both modes. Counted, not timed: the auth stand-in counts
//! the introspections it answers, Envoy counts the filter's callouts. The throughput side is
//! `bench/flood.sh`.

use std::sync::atomic::Ordering;

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::user_claims;

use super::client::get;

fn introspections(stack: &Stack) -> u64 {
    stack.auth.state.calls.introspect.load(Ordering::Relaxed)
}

async fn bounds(mode: Mode) {
    let mut opts = Options::test(mode).unwrap();
    opts.sidecar_extra =
        "apiKeys:\n  format: {prefix: demo-api-key-, maxLength: 64}\nfailedCredentials:\n  perClient: 5\n  window: 60s\n"
            .into();
    let stack = Stack::start(opts).await.unwrap();
    let key = |k: &str| vec![("x-api-key", k.to_string())];
    let send = |h: Vec<(&'static str, String)>| {
        let stack = &stack;
        async move {
            let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            get(stack, "/api/tools/x", &refs).await
        }
    };
    // A known key, cached before any junk arrives.
    assert_eq!(send(key("demo-api-key-bob")).await.status, 200);
    let base = introspections(&stack);

    // Keys without the configured shape: refused where they arrive, nothing asked.
    for i in 0..20 {
        let r = send(key(&format!("junk-{i}"))).await;
        assert_eq!((r.status, r.error()), (401, "api_key_malformed"), "{mode:?}");
    }
    assert_eq!(introspections(&stack), base, "{mode:?}: a malformed key was introspected");

    // Keys with the shape but unknown: at most `perClient` are asked about, then 429.
    let mut statuses = Vec::new();
    for i in 0..20 {
        statuses.push(send(key(&format!("demo-api-key-unknown-{i}"))).await.status);
    }
    let asked = introspections(&stack) - base;
    assert!(asked <= 5, "{mode:?}: {asked} introspections for one client's junk (limit 5)");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 429), "{mode:?}: {statuses:?}");
    // Malformed keys count as failures too where the sidecar sees them (native mode).
    assert!(statuses.iter().filter(|s| **s == 429).count() >= 15, "{mode:?}: {statuses:?}");
    // The limit never refuses a key the sidecar knows.
    assert_eq!(send(key("demo-api-key-bob")).await.status, 200, "{mode:?}");

    // Random `kid`s: the same unknown kid costs one callout, not one per request (wasm).
    if mode == Mode::Wasm {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        h.kid = Some("no-such-kid".into());
        let t = jsonwebtoken::encode(
            &h,
            &user_claims("u-x", "x@lab.example", &["admin"]),
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap();
        let auth = vec![("authorization", format!("Bearer {t}"))];
        assert_eq!(send(auth.clone()).await.status, 401);
        let before = stack.envoy_stat("authz_filter.callouts").await.unwrap_or(0);
        for _ in 0..20 {
            let r = send(auth.clone()).await;
            assert_eq!((r.status, r.error()), (401, "token_unknown_key"));
        }
        let after = stack.envoy_stat("authz_filter.callouts").await.unwrap_or(0);
        // One per worker at most (each VM learns it from its own callout).
        assert!(after - before <= 1, "{} callouts for a refused kid", after - before);
    }
}

/// Past the introspection budget the answer is 503 `authz_overloaded`, never a pass.
async fn overload(mode: Mode) {
    let mut opts = Options::test(mode).unwrap();
    opts.sidecar_extra =
        "apiKeys:\n  introspectionRate: 1\n  introspectionBurst: 2\nfailedCredentials:\n  perClient: 0\n".into();
    let stack = Stack::start(opts).await.unwrap();
    let base = introspections(&stack);
    let mut statuses = Vec::new();
    for i in 0..10 {
        let r = get(&stack, "/api/tools/x", &[("x-api-key", &format!("unknown-{i}"))]).await;
        statuses.push((r.status, r.error().to_string()));
    }
    let asked = introspections(&stack) - base;
    assert!(asked <= 4, "{mode:?}: {asked} introspections past a burst of 2");
    assert!(statuses.iter().all(|(s, _)| *s == 401 || *s == 503), "{mode:?}: {statuses:?}");
    let overloaded = statuses.iter().filter(|(s, e)| *s == 503 && e == "authz_overloaded").count();
    assert!(overloaded >= 6, "{mode:?}: {statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_bounded_wasm() {
    bounds(Mode::Wasm).await;
    overload(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_bounded_native() {
    bounds(Mode::ExtAuthz).await;
    overload(Mode::ExtAuthz).await;
}
