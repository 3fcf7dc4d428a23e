//! Opaque API keys, asked of the auth service (`POST ${IAM_URL}/auth/introspect`).
//!
//! Answers are cached in memory by the key's SHA-256 (never the key): positive answers for up
//! to `positiveTtl` (and never past the key's `exp`), negative ones for `negativeTtl`.
//! Concurrent lookups of one key share one call (moka's `try_get_with`). Auth-service
//! failures are not cached and surface as "unavailable" (503), never as a denial.

use std::sync::Arc;
use std::time::Duration;

use authz_core::Identity;
use authz_core::cache::digest;
use moka::future::Cache;
use serde::Deserialize;

use crate::metrics::Metrics;

/// The auth service's introspection answer (RFC 7662 shape plus the platform's claims).
#[derive(Debug, Deserialize)]
struct IntrospectionResponse {
    active: bool,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    exp: Option<u64>,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("API-key introspection failed: {0}")]
pub struct IntrospectionUnavailable(String);

pub struct Introspector {
    http: reqwest::Client,
    url: String,
    /// `Some(identity)` for an active key, `None` for a refused one.
    cache: Cache<[u8; 32], Option<Arc<Identity>>>,
    metrics: Arc<Metrics>,
}

impl Introspector {
    pub fn new(
        http: reqwest::Client,
        iam_url: &str,
        positive_ttl: Duration,
        negative_ttl: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let cache = Cache::builder()
            .max_capacity(100_000)
            .expire_after(ByAnswer { positive: positive_ttl, negative: negative_ttl })
            .build();
        Self { http, url: format!("{}/auth/introspect", iam_url.trim_end_matches('/')), cache, metrics }
    }

    /// The identity of an active key, `Ok(None)` for a refused key.
    pub async fn lookup(&self, key: &str) -> Result<Option<Arc<Identity>>, IntrospectionUnavailable> {
        let now = crate::identity_cache::unix_now();
        let answer = self
            .cache
            .try_get_with(digest(key), self.call(key))
            .await
            .map_err(|e: Arc<IntrospectionUnavailable>| (*e).clone())?;
        // A cached positive answer never outlives the key's own expiry.
        Ok(answer.filter(|id| id.expires_at == 0 || id.expires_at > now))
    }

    async fn call(&self, key: &str) -> Result<Option<Arc<Identity>>, IntrospectionUnavailable> {
        let result = async {
            let resp = self
                .http
                .post(&self.url)
                .json(&serde_json::json!({ "token": key, "token_type_hint": "api_key" }))
                .send()
                .await
                .map_err(|e| IntrospectionUnavailable(e.without_url().to_string()))?;
            if !resp.status().is_success() {
                return Err(IntrospectionUnavailable(format!("HTTP {}", resp.status().as_u16())));
            }
            let body: IntrospectionResponse =
                resp.json().await.map_err(|e| IntrospectionUnavailable(e.without_url().to_string()))?;
            Ok(to_identity(body))
        }
        .await;
        let label = match &result {
            Ok(Some(_)) => "active",
            Ok(None) => "inactive",
            Err(_) => "error",
        };
        self.metrics.introspections.get_or_create(&vec![("result", label)]).inc();
        result
    }
}

fn to_identity(r: IntrospectionResponse) -> Option<Arc<Identity>> {
    if !r.active {
        return None;
    }
    let claims =
        authz_core::claims::Claims { sub: r.sub, email: r.email, roles: r.roles, exp: r.exp, ..Default::default() };
    Identity::from_claims(claims).ok().map(Arc::new)
}

struct ByAnswer {
    positive: Duration,
    negative: Duration,
}

impl moka::Expiry<[u8; 32], Option<Arc<Identity>>> for ByAnswer {
    fn expire_after_create(
        &self,
        _k: &[u8; 32],
        v: &Option<Arc<Identity>>,
        _at: std::time::Instant,
    ) -> Option<Duration> {
        Some(if v.is_some() { self.positive } else { self.negative })
    }
}
