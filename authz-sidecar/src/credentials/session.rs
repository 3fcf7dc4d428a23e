//! Session liveness for `requireSession` routes: `GET ${IAM_URL}/auth/validate` with the
//! bearer token, cached briefly by the token's SHA-256 (both answers, `sessionCacheTtl`).
//! Concurrent checks of one token share one call. An unreachable auth service is
//! "unavailable" (503), never a pass.

use std::sync::Arc;
use std::time::Duration;

use authz_core::cache::digest;
use moka::future::Cache;

use crate::backend::AuthService;
use crate::metrics::Metrics;

#[derive(Debug, Clone, thiserror::Error)]
#[error("session validation failed: {0}")]
pub struct SessionUnavailable(String);

pub struct SessionChecker {
    auth: Arc<dyn AuthService>,
    cache: Cache<[u8; 32], bool>,
    metrics: Arc<Metrics>,
}

impl SessionChecker {
    pub fn new(auth: Arc<dyn AuthService>, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        let cache = Cache::builder().max_capacity(100_000).time_to_live(ttl).build();
        Self { auth, cache, metrics }
    }

    /// True when the auth service says the token's session is alive.
    pub async fn is_alive(&self, token: &str) -> Result<bool, SessionUnavailable> {
        self.cache.try_get_with(digest(token), self.call(token)).await.map_err(|e| (*e).clone())
    }

    async fn call(&self, token: &str) -> Result<bool, SessionUnavailable> {
        let result = self.auth.session_alive(token).await.map_err(SessionUnavailable);
        let label = match &result {
            Ok(true) => "alive",
            Ok(false) => "dead",
            Err(_) => "error",
        };
        self.metrics.session_checks.get_or_create(&vec![("result", label)]).inc();
        result
    }
}
