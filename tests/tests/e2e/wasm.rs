//! The gateway with the wasm filter.

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, OTHER_PRIVATE_PEM, sign_rs256, sign_with, user_claims};

use super::client::{bearer, get};
use super::{sidecar, verdicts};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_filter_verdicts_metrics_and_sidecar_outage() {
    let mut stack = Stack::start(Options::test(Mode::Wasm).unwrap()).await.unwrap();
    verdicts::all(&stack).await;
    sidecar::admin_and_health(&stack).await;

    // The filter's counters are in Envoy's stats (the request counters from the next tick
    // on: they are kept in the VM and flushed every 200 ms).
    for counter in ["allowed", "denied", "cache_hits", "cache_misses", "callouts"] {
        let start = std::time::Instant::now();
        loop {
            let n = stack.envoy_stat(&format!("authz_filter.{counter}")).await;
            if n.is_some_and(|n| n > 0) {
                break;
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(2), "authz_filter.{counter} = {n:?}");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    // JWTs with known keys never left Envoy: callouts are API keys and the unknown kid only.
    assert_eq!(stack.envoy_stat("authz_filter.callouts").await, Some(5));

    // Sidecar gone: tokens the filter can verify still work; whatever needs the sidecar is
    // 503, never 200; denials stay denials.
    stack.stop_sidecar().await.unwrap();
    let alice = user_claims("u-alice", "alice@lab.example", &["user"]);
    let local = bearer(&sign_rs256(&alice, Some(DEV_KID)).unwrap());
    let r = get(&stack, "/api/tools/x", &[("authorization", &local)]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-alice")), "local verification");
    let r = get(&stack, "/api/tools/x", &[("x-api-key", "demo-api-key-bob")]).await;
    assert_eq!((r.status, r.error()), (503, "authz_unavailable"), "{}", r.json);
    let unknown = bearer(&sign_with(&alice, Some("new-kid"), OTHER_PRIVATE_PEM).unwrap());
    let r = get(&stack, "/api/tools/x", &[("authorization", &unknown), ("x-user-id", "u-admin")]).await;
    assert_eq!(r.status, 503, "{}", r.json);
    let r = get(&stack, "/api/tools/x", &[]).await;
    assert_eq!(r.status, 401);

    // Back: the callout path recovers without restarting Envoy.
    stack.start_sidecar().await.unwrap();
    let r = get(&stack, "/api/tools/x", &[("x-api-key", "demo-api-key-bob")]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    sidecar::no_secrets_in_logs(&stack);
}
