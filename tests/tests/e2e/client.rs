//! Small helpers to call the gateway and read what the upstream saw.

use authz_e2e::stack::Stack;
use serde_json::Value;

/// A response: status, headers, and the body as JSON (or `Null`).
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// A header as the upstream echo saw it (a repeated header shows as a JSON array).
    pub fn upstream(&self, name: &str) -> &Value {
        &self.json["headers"][name]
    }

    /// The `error` code of a denial body.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

pub async fn get(stack: &Stack, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(stack, reqwest::Method::GET, path, headers).await
}

pub async fn request(stack: &Stack, method: reqwest::Method, path: &str, headers: &[(&str, &str)]) -> Reply {
    send(stack, method, path, headers, None).await
}

/// A `POST` with a body.
pub async fn post(stack: &Stack, path: &str, headers: &[(&str, &str)], body: impl Into<reqwest::Body>) -> Reply {
    send(stack, reqwest::Method::POST, path, headers, Some(body.into())).await
}

pub async fn send(
    stack: &Stack,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<reqwest::Body>,
) -> Reply {
    let mut req = stack.client.request(method, stack.gateway_url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body(body);
    }
    let resp = req.send().await.expect("gateway reachable");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Reply { status, headers, json: serde_json::from_str(&text).unwrap_or(Value::Null) }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && uuid::Uuid::parse_str(s).is_ok()
}
