//! Per-client counts of refused API keys, so one client spraying junk cannot make the sidecar
//! ask the auth service about every key it invents.
//!
//! The client is Envoy's downstream remote address (`CheckRequest.attributes.source`, which
//! both Envoy's ext_authz and the filter send; behind trusted proxies it is the address Envoy
//! derived from `X-Forwarded-For` with `xff_num_trusted_hops`). A window starts at a client's
//! first failure; within it, at most `perClient` failures are looked up, after which the
//! client's unknown API keys are refused (429) until the window ends. Known keys (cached
//! answers) are never refused this way, so a legitimate user behind the same address keeps
//! working.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use moka::future::Cache;

pub struct FailureLimiter {
    per_client: u32,
    counts: Cache<String, Arc<AtomicU32>>,
}

impl FailureLimiter {
    /// `per_client` 0 disables the limit.
    pub fn new(per_client: u32, window: Duration) -> Self {
        Self { per_client, counts: Cache::builder().max_capacity(100_000).time_to_live(window).build() }
    }

    /// Whether `client` has used up its failures for the current window.
    pub async fn exhausted(&self, client: &str) -> bool {
        if self.per_client == 0 || client.is_empty() {
            return false;
        }
        self.counts.get(client).await.is_some_and(|n| n.load(Ordering::Relaxed) >= self.per_client)
    }

    /// Counts one failed credential of `client`.
    pub async fn failed(&self, client: &str) {
        if self.per_client == 0 || client.is_empty() {
            return;
        }
        let n = self.counts.get_with(client.to_string(), async { Arc::new(AtomicU32::new(0)) }).await;
        n.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_per_client_within_a_window() {
        let l = FailureLimiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(!l.exhausted("10.0.0.1").await);
            l.failed("10.0.0.1").await;
        }
        assert!(l.exhausted("10.0.0.1").await);
        assert!(!l.exhausted("10.0.0.2").await, "another client is not limited");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!l.exhausted("10.0.0.1").await, "the window ended");
        let off = FailureLimiter::new(0, Duration::from_secs(1));
        off.failed("x").await;
        assert!(!off.exhausted("x").await);
    }
}
