//! The HTTP admin port: `/healthz` (alive), `/readyz` (keys fetched, Redis answering, the
//! revocation subscription live), `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use redis::aio::ConnectionManager;

use crate::keystore::KeyStore;
use crate::metrics::Metrics;
use crate::revocations::RevocationHub;

pub struct AdminState {
    pub keys: Arc<KeyStore>,
    pub revocations: Arc<RevocationHub>,
    pub redis: ConnectionManager,
    pub metrics: Arc<Metrics>,
    pub redis_timeout: Duration,
}

pub fn router(state: Arc<AdminState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    let keys = s.keys.current();
    let keys_ready = keys.jwks_loaded;
    let mut conn = s.redis.clone();
    let cmd = redis::cmd("PING");
    let ping = cmd.query_async::<String>(&mut conn);
    let redis_ready = matches!(tokio::time::timeout(s.redis_timeout, ping).await, Ok(Ok(_)));
    let revocations = s.revocations.current();
    let ready = keys_ready && redis_ready && revocations.live;
    let body = serde_json::json!({
        "ready": ready,
        "keys": { "ready": keys_ready, "version": keys.version, "count": keys.keys.len() },
        "redis": { "ready": redis_ready },
        "revocations": { "live": revocations.live, "version": revocations.version, "count": revocations.set.len() },
    });
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string())
}

async fn metrics(State(s): State<Arc<AdminState>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}
