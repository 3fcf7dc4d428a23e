//! Echo upstreams: development stand-ins for the platform's services. Each answers every
//! request with JSON `{"service", "method", "path", "headers"}`, so one can see exactly what
//! the gateway forwarded. A request carrying `x-echo-status: <code>` is answered with that
//! status (how tests make a service fail). With a [`SeenLog`], every request is also kept, so a
//! test can show what reached *any* upstream (and that a refused request reached none).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Json;
use tokio::net::TcpListener;

/// One request as an upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub service: &'static str,
    pub path: String,
    /// Every header, in order, repeated ones included.
    pub headers: Vec<(String, String)>,
}

/// What the upstreams of one stack have received.
pub type SeenLog = Arc<Mutex<Vec<Seen>>>;

#[derive(Clone)]
struct Echo {
    service: &'static str,
    seen: Option<SeenLog>,
}

async fn echo(State(Echo { service, seen }): State<Echo>, req: Request) -> (StatusCode, Json<serde_json::Value>) {
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
    if let Some(Ok(mut log)) = seen.as_ref().map(|s| s.lock()) {
        log.push(Seen {
            service,
            path: req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
                .collect(),
        });
    }
    let body = serde_json::json!({
        "service": service,
        "method": req.method().as_str(),
        "path": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
    });
    (status, Json(body))
}

/// Serves an echo upstream named `service` on `addr` until the task is dropped, recording
/// every request in `seen` if given (a load test would fill memory with them).
pub async fn spawn(service: &'static str, addr: SocketAddr, seen: Option<SeenLog>) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = Router::new().fallback(echo).with_state(Echo { service, seen });
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(local)
}
