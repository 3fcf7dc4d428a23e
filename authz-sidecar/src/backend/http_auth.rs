//! The platform's auth service over HTTP: `POST ${IAM_URL}/auth/introspect` for API keys (RFC
//! 7662 shape plus the platform's claims) and `GET ${IAM_URL}/auth/validate` for sessions.

use authz_core::Identity;
use serde::Deserialize;

use super::AuthService;

/// The auth service's introspection answer.
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

pub struct HttpAuthService {
    http: reqwest::Client,
    introspect_url: String,
    validate_url: String,
}

impl HttpAuthService {
    pub fn new(http: reqwest::Client, iam_url: &str) -> Self {
        let base = iam_url.trim_end_matches('/');
        Self { http, introspect_url: format!("{base}/auth/introspect"), validate_url: format!("{base}/auth/validate") }
    }
}

#[tonic::async_trait]
impl AuthService for HttpAuthService {
    async fn introspect(&self, key: &str) -> Result<Option<Identity>, String> {
        let resp = self
            .http
            .post(&self.introspect_url)
            .json(&serde_json::json!({ "token": key, "token_type_hint": "api_key" }))
            .send()
            .await
            .map_err(|e| e.without_url().to_string())?;
        if !resp.status().is_success() {
            return Err(format!("HTTP {}", resp.status().as_u16()));
        }
        let body: IntrospectionResponse = resp.json().await.map_err(|e| e.without_url().to_string())?;
        Ok(identity_of(body))
    }

    async fn session_alive(&self, token: &str) -> Result<bool, String> {
        match self.http.get(&self.validate_url).bearer_auth(token).send().await {
            Ok(r) if r.status().is_success() => Ok(true),
            Ok(r) if matches!(r.status().as_u16(), 401 | 403) => Ok(false),
            Ok(r) => Err(format!("HTTP {}", r.status().as_u16())),
            Err(e) => Err(e.without_url().to_string()),
        }
    }
}

/// An "active" answer without a usable subject is refused: we cannot say who it is.
fn identity_of(r: IntrospectionResponse) -> Option<Identity> {
    if !r.active {
        return None;
    }
    let claims =
        authz_core::claims::Claims { sub: r.sub, email: r.email, roles: r.roles, exp: r.exp, ..Default::default() };
    Identity::from_claims(claims).ok()
}
