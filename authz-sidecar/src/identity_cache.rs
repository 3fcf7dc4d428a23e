//! The sidecar's identity cache: memory (moka) in front of Redis, shared by all replicas.
//!
//! Keyed by the SHA-256 of the token (never the token). An entry lives until the token's `exp`
//! (bounded by `maxTtl`). Only verified identities are stored. Redis is an optimisation here:
//! when it is slow or down, lookups fall through to local verification and the error is
//! counted, so authentication keeps its verdicts.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use authz_core::Identity;
use authz_core::cache::TokenDigest;
use moka::Expiry;
use moka::future::Cache;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tracing::debug;

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

fn remaining(exp: u64, now: u64) -> Duration {
    Duration::from_secs(exp.saturating_sub(now))
}

pub struct IdentityCache {
    memory: Cache<TokenDigest, Arc<Identity>>,
    redis: ConnectionManager,
    prefix: String,
    timeout: Duration,
    max_ttl: Duration,
    metrics: Arc<Metrics>,
}

impl IdentityCache {
    pub fn new(
        capacity: u64,
        redis: ConnectionManager,
        prefix: String,
        timeout: Duration,
        max_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let memory = Cache::builder().max_capacity(capacity).expire_after(UntilExp { max: max_ttl }).build();
        Self { memory, redis, prefix, timeout, max_ttl, metrics }
    }

    fn redis_key(&self, digest: &TokenDigest) -> String {
        format!("{}id:{}", self.prefix, hex::encode(digest))
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
        let mut conn = self.redis.clone();
        let key = self.redis_key(digest);
        let fetched: Option<String> = match tokio::time::timeout(self.timeout, conn.get(&key)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                debug!(error = %e, "redis GET failed");
                None
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                None
            }
        };
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
        let Ok(json) = serde_json::to_string(&*id) else { return };
        let mut conn = self.redis.clone();
        let key = self.redis_key(&digest);
        let set = conn.set_ex::<_, _, ()>(key, json, ttl.as_secs());
        match tokio::time::timeout(self.timeout, set).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                debug!(error = %e, "redis SET failed");
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
            }
        }
    }
}
