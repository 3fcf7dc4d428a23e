//! Echo upstreams: development stand-ins for the platform's services. Each answers every
//! request with JSON `{"service", "method", "path", "headers"}`, so one can see exactly what
//! the gateway forwarded. A request carrying `x-echo-status: <code>` is answered with that
//! status (how tests make a service fail).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Json;
use tokio::net::TcpListener;

async fn echo(State(service): State<&'static str>, req: Request) -> (StatusCode, Json<serde_json::Value>) {
    let status = req
        .headers()
        .get("x-echo-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::OK);
    let mut headers: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    for (name, value) in req.headers() {
        let v = String::from_utf8_lossy(value.as_bytes()).into_owned();
        match headers.get_mut(name.as_str()) {
            // A repeated header shows as a list, so duplicates are visible in tests.
            Some(serde_json::Value::Array(list)) => list.push(v.into()),
            Some(existing) => *existing = serde_json::json!([existing.clone(), v]),
            None => {
                headers.insert(name.as_str().to_string(), v.into());
            }
        }
    }
    let body = serde_json::json!({
        "service": service,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    (status, Json(body))
}

/// Serves an echo upstream named `service` on `addr` until the task is dropped.
pub async fn spawn(service: &'static str, addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().fallback(echo).with_state(service);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}
