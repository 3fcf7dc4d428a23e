//! Opaque API keys, asked of the auth service (`POST ${IAM_URL}/auth/introspect`).
//!
//! Answers are cached by the key's SHA-256 (never the key) in memory and in Redis, positive
//! answers for `apiKeys.positiveTtl` (never past the key's `exp`), negative ones for
//! `apiKeys.negativeTtl`. Concurrent lookups of one key share one call (moka's
//! `try_get_with`). Auth-service failures are not cached and surface as "unavailable" (503).

use std::sync::Arc;
use std::time::{Duration, Instant};

use authz_core::Identity;
use authz_core::cache::digest;
use moka::future::Cache;
use serde::{Deserialize, Serialize};

use crate::backend::{AuthService, SharedKv};
use crate::credentials::identity_cache::{remaining, unix_now};
use crate::metrics::Metrics;

/// What is cached for a key: its identity, or the fact that it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Answer {
    Active(Arc<Identity>),
    Refused,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("API-key introspection failed: {reason}")]
pub struct IntrospectionUnavailable {
    reason: String,
    /// Refused by our own bounds (`apiKeys.maxConcurrentIntrospections`, the rate budget),
    /// not by the auth service: answered 503 `authz_overloaded`.
    pub overloaded: bool,
}

impl IntrospectionUnavailable {
    fn failed(reason: String) -> Self {
        Self { reason, overloaded: false }
    }
}

/// How much of the auth service one sidecar may use for introspections: calls in flight,
/// and a token bucket of calls per second. Cached answers cost nothing.
pub struct IntrospectionBudget {
    in_flight: tokio::sync::Semaphore,
    bucket: std::sync::Mutex<Bucket>,
    rate: f64,
    burst: f64,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl IntrospectionBudget {
    pub fn new(max_concurrent: usize, rate_per_second: u32, burst: u32) -> Self {
        Self {
            in_flight: tokio::sync::Semaphore::new(max_concurrent),
            bucket: std::sync::Mutex::new(Bucket { tokens: f64::from(burst), at: Instant::now() }),
            rate: f64::from(rate_per_second),
            burst: f64::from(burst),
        }
    }

    /// Takes one call from the rate budget, if any is left.
    fn take(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else { return false };
        let now = Instant::now();
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

pub struct Introspector {
    auth: Arc<dyn AuthService>,
    memory: Cache<[u8; 32], Answer>,
    redis: Arc<dyn SharedKv>,
    positive_ttl: Duration,
    negative_ttl: Duration,
    metrics: Arc<Metrics>,
    budget: IntrospectionBudget,
}

struct ByAnswer {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<[u8; 32], Answer> for ByAnswer {
    fn expire_after_create(&self, _k: &[u8; 32], v: &Answer, _at: Instant) -> Option<Duration> {
        Some(match v {
            Answer::Active(id) if id.expires_at > 0 => remaining(id.expires_at, unix_now()).min(self.positive),
            Answer::Active(_) => self.positive,
            Answer::Refused => self.negative,
        })
    }
}

impl Introspector {
    pub fn new(
        auth: Arc<dyn AuthService>,
        redis: Arc<dyn SharedKv>,
        positive_ttl: Duration,
        negative_ttl: Duration,
        metrics: Arc<Metrics>,
        budget: IntrospectionBudget,
    ) -> Self {
        let memory = Cache::builder()
            .max_capacity(100_000)
            .expire_after(ByAnswer { positive: positive_ttl, negative: negative_ttl })
            .build();
        Self { auth, memory, redis, positive_ttl, negative_ttl, metrics, budget }
    }

    /// Whether this sidecar holds an answer for `key` in memory (a lookup costs no call).
    pub fn is_cached(&self, key: &str) -> bool {
        self.memory.contains_key(&digest(key))
    }

    /// The identity of an active key, `Ok(None)` for a refused key.
    pub async fn lookup(&self, key: &str) -> Result<Option<Arc<Identity>>, IntrospectionUnavailable> {
        let d = digest(key);
        let answer = self.memory.try_get_with(d, self.shared_or_call(key, d)).await.map_err(|e| (*e).clone())?;
        let now = unix_now();
        Ok(match answer {
            // A cached positive answer never outlives the key's own expiry.
            Answer::Active(id) if id.expires_at == 0 || id.expires_at > now => Some(id),
            _ => None,
        })
    }

    /// Redis first (another replica may have asked already), then the auth service.
    async fn shared_or_call(&self, key: &str, d: [u8; 32]) -> Result<Answer, IntrospectionUnavailable> {
        let redis_key = self.redis.key("ak", &d);
        if let Some(answer) = self.redis.get(&redis_key).await.and_then(|s| serde_json::from_str::<Answer>(&s).ok()) {
            return Ok(answer);
        }
        let answer = self.call(key).await?;
        let ttl = match &answer {
            Answer::Active(id) if id.expires_at > 0 => remaining(id.expires_at, unix_now()).min(self.positive_ttl),
            Answer::Active(_) => self.positive_ttl,
            Answer::Refused => self.negative_ttl,
        };
        if let Ok(json) = serde_json::to_string(&answer) {
            self.redis.set_ex(&redis_key, &json, ttl).await;
        }
        Ok(answer)
    }

    async fn call(&self, key: &str) -> Result<Answer, IntrospectionUnavailable> {
        // Our bounds first: beyond them nothing is asked (and nothing cached), the caller
        // answers 503.
        let overloaded = || {
            self.metrics.introspections.get_or_create(&vec![("result", "overloaded")]).inc();
            IntrospectionUnavailable { reason: "introspection budget spent".into(), overloaded: true }
        };
        let Ok(_permit) = self.budget.in_flight.try_acquire() else { return Err(overloaded()) };
        if !self.budget.take() {
            return Err(overloaded());
        }
        let result = match self.auth.introspect(key).await {
            Ok(Some(id)) => Ok(Answer::Active(Arc::new(id))),
            Ok(None) => Ok(Answer::Refused),
            Err(reason) => Err(IntrospectionUnavailable::failed(reason)),
        };
        let label = match &result {
            Ok(Answer::Active(_)) => "active",
            Ok(Answer::Refused) => "inactive",
            Err(_) => "error",
        };
        self.metrics.introspections.get_or_create(&vec![("result", label)]).inc();
        result
    }
}
