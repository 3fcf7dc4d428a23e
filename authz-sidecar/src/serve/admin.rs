//! The HTTP admin port: `/healthz` (alive), `/readyz` (keys fetched, Redis answering, the
//! revocation subscription live), `/metrics`, and the lease API for compute services
//! (`/quota/v1/leases/...`, see `quota_api`).

use std::sync::Arc;
use std::time::Duration;

use crate::backend::redis_conn::RedisConn;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};

use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::RevocationHub;
use crate::metrics::Metrics;
use crate::serve::quota_api::{self, QuotaApi};

pub struct AdminState {
    pub keys: KeyStores,
    pub revocations: Arc<RevocationHub>,
    pub redis: RedisConn,
    pub metrics: Arc<Metrics>,
    pub redis_timeout: Duration,
}

pub fn router(state: Arc<AdminState>, quota: Arc<QuotaApi>) -> Router {
    let leases = Router::new()
        .route("/quota/v1/leases/{id}/release", post(quota_api::http_release))
        .route("/quota/v1/leases/{id}/renew", post(quota_api::http_renew))
        .with_state(quota);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(leases)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    // The default provider's keys decide readiness: another provider's identity provider
    // being away fails its own tokens (503) only, never the whole gateway.
    let keys = s.keys.default_store().current();
    let keys_ready = keys.jwks_loaded;
    let providers: serde_json::Map<String, serde_json::Value> = s
        .keys
        .iter()
        .skip(1)
        .map(|store| {
            let k = store.current();
            let state = serde_json::json!({"ready": k.jwks_loaded, "version": k.version, "count": k.keys.len()});
            (store.provider().to_string(), state)
        })
        .collect();
    let mut conn = s.redis.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    let redis_ready = matches!(tokio::time::timeout(s.redis_timeout, ping).await, Ok(Ok(_)));
    let revocations = s.revocations.current();
    // Ready once it can serve: the default provider's keys and the first revocation sync. A
    // Redis restart or a lost subscription afterwards does not take every pod out of the
    // Service (decisions go on with the set held; the subscription resyncs when Redis is back):
    // both are reported below and alerted on (observability/alerts.yaml).
    let ready = keys_ready && revocations.synced;
    let body = serde_json::json!({
        "ready": ready,
        "keys": { "ready": keys_ready, "version": keys.version, "count": keys.keys.len() },
        "providers": providers,
        "redis": { "ready": redis_ready },
        "revocations": { "live": revocations.live, "version": revocations.version, "count": revocations.set.len() },
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

/// OpenMetrics for a scraper that asks for it (Prometheus does, first), else the Prometheus
/// text format 0.0.4 (what `promtool check metrics` and `curl` read).
async fn metrics(State(s): State<Arc<AdminState>>, headers: axum::http::HeaderMap) -> impl IntoResponse {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    if accept.contains("application/openmetrics-text") {
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.render())
    } else {
        ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], s.metrics.render_text())
    }
}
