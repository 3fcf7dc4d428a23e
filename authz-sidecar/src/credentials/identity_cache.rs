//! The sidecar's identity cache: memory (moka) in front of Redis, shared by all replicas.
//!
//! Keyed by the SHA-256 of the token (never the token). An entry lives until the token's `exp`
//! (bounded by `maxTtl`). Only verified identities are stored, and what is stored does not
//! depend on the route (issuer and audience are checked per request), so one entry serves
//! every route. Redis is an optimisation here: when it is slow or down, lookups fall through
//! to local verification.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authz_core::Identity;
use authz_core::cache::TokenDigest;
use moka::Expiry;
use moka::future::Cache;

use crate::backend::SharedKv;
use crate::metrics::Metrics;

/// Expires each entry at its identity's `exp`.
struct UntilExp {
    max: Duration,
}

impl Expiry<TokenDigest, Arc<Identity>> for UntilExp {
    fn expire_after_create(&self, _k: &TokenDigest, v: &Arc<Identity>, _at: Instant) -> Option<Duration> {
        Some(remaining(v.expires_at, unix_now()).min(self.max))
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

pub fn remaining(exp: u64, now: u64) -> Duration {
    Duration::from_secs(exp.saturating_sub(now))
}

pub struct IdentityCache {
    memory: Cache<TokenDigest, Arc<Identity>>,
    redis: Arc<dyn SharedKv>,
    max_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl IdentityCache {
    pub fn new(capacity: u64, redis: Arc<dyn SharedKv>, max_ttl: Duration, metrics: Arc<Metrics>) -> Self {
        let memory = Cache::builder().max_capacity(capacity).expire_after(UntilExp { max: max_ttl }).build();
        Self { memory, redis, max_ttl, metrics }
    }

    fn count(&self, layer: &'static str, result: &'static str) {
        self.metrics.identity_cache.get_or_create(&vec![("layer", layer), ("result", result)]).inc();
    }

    /// A cached identity still valid at `now`.
    pub async fn get(&self, digest: &TokenDigest, now: u64) -> Option<Arc<Identity>> {
        if let Some(id) = self.memory.get(digest).await.filter(|id| id.expires_at > now) {
            self.count("memory", "hit");
            return Some(id);
        }
        self.count("memory", "miss");
        let fetched = self.redis.get(&self.redis.key("id", digest)).await;
        let id = fetched.and_then(|s| serde_json::from_str::<Identity>(&s).ok()).filter(|id| id.expires_at > now);
        match id {
            Some(id) => {
                self.count("redis", "hit");
                let id = Arc::new(id);
                self.memory.insert(*digest, Arc::clone(&id)).await;
                Some(id)
            }
            None => {
                self.count("redis", "miss");
                None
            }
        }
    }

    /// Remembers a verified identity in memory and in Redis.
    pub async fn put(&self, digest: TokenDigest, id: Arc<Identity>, now: u64) {
        let ttl = remaining(id.expires_at, now).min(self.max_ttl);
        if ttl.is_zero() {
            return;
        }
        self.memory.insert(digest, Arc::clone(&id)).await;
        if let Ok(json) = serde_json::to_string(&*id) {
            self.redis.set_ex(&self.redis.key("id", &digest), &json, ttl).await;
        }
    }
}
