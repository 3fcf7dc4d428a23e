//! Session liveness for `requireSession` routes: `GET ${IAM_URL}/auth/validate` with the
//! bearer token, cached briefly by the token's SHA-256 (both answers, `sessionCacheTtl`).
//! Concurrent checks of one token share one call. An unreachable auth service is
//! "unavailable" (503), never a pass.

use std::sync::Arc;
use std::time::Duration;

use authz_core::cache::digest;
use moka::future::Cache;

use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
#[error("session validation failed: {0}")]
pub struct SessionUnavailable(String);

pub struct SessionChecker {
    http: reqwest::Client,
    url: String,
    cache: Cache<[u8; 32], bool>,
    metrics: Arc<Metrics>,
}

impl SessionChecker {
    pub fn new(http: reqwest::Client, iam_url: &str, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        Self { http, url: format!("{}/auth/validate", iam_url.trim_end_matches('/')), cache, metrics }
    }

    /// True when the auth service says the token's session is alive.
    pub async fn is_alive(&self, token: &str) -> Result<bool, SessionUnavailable> {
        self.cache.try_get_with(digest(token), self.call(token)).await.map_err(|e| (*e).clone())
    }

    async fn call(&self, token: &str) -> Result<bool, SessionUnavailable> {
        let result = match self.http.get(&self.url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => Ok(true),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Ok(false),
            Ok(r) => Err(SessionUnavailable(format!("HTTP {}", r.status().as_u16()))),
            Err(e) => Err(SessionUnavailable(e.without_url().to_string())),
        };
        let label = match &result {
            Ok(true) => "alive",
            Ok(false) => "dead",
            Err(_) => "error",
        };
        self.metrics.session_checks.get_or_create(&vec![("result", label)]).inc();
        result
    }
}
