//! The sidecar against a Redis Cluster (three masters on loopback): the identity cache,
//! revocations (pub/sub and the stored state spread over the masters), quota leases and the
//! audit stream all work as against one Redis.

use authz_e2e::stack::{Mode, Stack};

use super::client::get;
use super::{quota, revocation};

/// Keys under `authz:` on every master (SCAN per node: a cluster has no global SCAN).
async fn keys_per_node(stack: &Stack, pattern: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for port in &stack.cluster_ports {
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS").arg(pattern).query_async(&mut conn).await.unwrap();
        out.push(keys.len());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_on_a_redis_cluster() {
    let mut opts = quota::options(Mode::Wasm);
    opts.redis_cluster = true;
    let mut stack = Stack::start(opts).await.unwrap();
    assert_eq!(stack.cluster_ports.len(), 3);

    // Cache: an API key's introspection is cached in the cluster.
    let r = get(&stack, "/api/tools/x", &[("x-api-key", "demo-api-key-bob")]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let cached: usize = keys_per_node(&stack, "authz:ak:*").await.iter().sum();
    assert!(cached >= 1, "no cached API-key identity in the cluster");

    // Quota and audit: leases, refusals and one event per request, through the cluster.
    quota::one_audit_event_per_request(&stack, true).await;
    quota::two_sidecars_grant_exactly_the_limit(&stack).await;

    // Revocation: pub/sub reaches the sidecar through one node, facts stored on any master are
    // found after a reconnect.
    revocation::logout_reaches_every_worker(&stack).await;
    revocation::revoked_api_key(&stack).await;
    revocation::lost_message(&mut stack).await;
    let stored = keys_per_node(&stack, "authz:revoked:*").await;
    assert!(stored.iter().sum::<usize>() >= 3, "stored revocations per node: {stored:?}");
}
