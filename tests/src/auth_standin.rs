//! A development stand-in for the platform's auth service, speaking its contract:
//!
//! - `POST /auth/login` `{"username","password"}` → `{"access_token","refresh_token","token_type":"Bearer","expires_in"}`
//! - `GET /.well-known/jwks.json` → the public signing keys
//! - `GET /auth/validate` (Bearer) → 200 `{"valid":true,...}` while the session lives, else 401
//! - `POST /auth/introspect` `{"token"}` → `{"active":...}` for API keys (RFC 7662 shape)
//! - `POST /auth/logout` (Bearer) → 204, ends the session
//!
//! Demo users and API keys are fixed (see [`DEMO_USERS`], [`DEMO_API_KEYS`]). It signs RS256
//! with the development key from `tests/fixtures`. It counts the calls it receives so tests
//! can assert caching. It is not an auth service: no password hashing, no persistence.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Validation};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::tokens::{AUDIENCE, DEV_KID, DEV_PRIVATE_PEM, ISSUER, sign_rs256, user_claims};

/// A demo account: username, password, subject, email, roles.
pub struct DemoUser {
    pub username: &'static str,
    pub password: &'static str,
    pub sub: &'static str,
    pub email: &'static str,
    pub roles: &'static [&'static str],
}

pub const DEMO_USERS: &[DemoUser] = &[
    DemoUser {
        username: "alice",
        password: "alice-demo-pw",
        sub: "u-alice",
        email: "alice@lab.example",
        roles: &["admin", "user"],
    },
    DemoUser { username: "bob", password: "bob-demo-pw", sub: "u-bob", email: "bob@lab.example", roles: &["user"] },
];

/// Demo API keys: key → user subject.
pub const DEMO_API_KEYS: &[(&str, &str)] = &[("demo-api-key-alice", "u-alice"), ("demo-api-key-bob", "u-bob")];

/// Call counters, per endpoint.
#[derive(Debug, Default)]
pub struct Calls {
    pub jwks: AtomicU64,
    pub introspect: AtomicU64,
    pub validate: AtomicU64,
    pub login: AtomicU64,
}

pub struct AuthState {
    pub calls: Calls,
    /// Sessions ended by logout.
    revoked_sessions: Mutex<HashSet<String>>,
    decoding: DecodingKey,
    jwks: serde_json::Value,
}

/// A running stand-in.
pub struct AuthStandin {
    pub addr: SocketAddr,
    pub state: Arc<AuthState>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthStandin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for AuthStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn jwks() -> anyhow::Result<serde_json::Value> {
    let enc = EncodingKey::from_rsa_pem(DEV_PRIVATE_PEM.as_bytes())?;
    let mut jwk = Jwk::from_encoding_key(&enc, Algorithm::RS256)?;
    jwk.common.key_id = Some(DEV_KID.to_string());
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(serde_json::json!({ "keys": [jwk] }))
}

/// Starts the stand-in on `addr` (port 0 for an ephemeral one).
pub async fn spawn(addr: SocketAddr) -> anyhow::Result<AuthStandin> {
    let jwks = jwks()?;
    let decoding = {
        let jwk: Jwk = serde_json::from_value(jwks["keys"][0].clone())?;
        DecodingKey::from_jwk(&jwk)?
    };
    let state = Arc::new(AuthState { calls: Calls::default(), revoked_sessions: Mutex::default(), decoding, jwks });
    let app = Router::new()
        .route("/auth/login", post(login))
        .route("/.well-known/jwks.json", get(jwks_handler))
        .route("/auth/validate", get(validate))
        .route("/auth/introspect", post(introspect))
        .route("/auth/logout", post(logout))
        .with_state(Arc::clone(&state));
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(AuthStandin { addr, state, task })
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(State(s): State<Arc<AuthState>>, Json(body): Json<Login>) -> Response {
    s.calls.login.fetch_add(1, Ordering::Relaxed);
    let Some(user) = DEMO_USERS.iter().find(|u| u.username == body.username && u.password == body.password) else {
        return error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    };
    let claims = user_claims(user.sub, user.email, user.roles);
    match sign_rs256(&claims, Some(DEV_KID)) {
        Ok(token) => Json(serde_json::json!({
            "access_token": token,
            "refresh_token": uuid::Uuid::new_v4().to_string(),
            "token_type": "Bearer",
            "expires_in": 900,
        }))
        .into_response(),
        Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "signing_failed"),
    }
}

async fn jwks_handler(State(s): State<Arc<AuthState>>) -> Json<serde_json::Value> {
    s.calls.jwks.fetch_add(1, Ordering::Relaxed);
    Json(s.jwks.clone())
}

fn bearer_claims(s: &AuthState, headers: &HeaderMap) -> Option<serde_json::Value> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    let mut v = Validation::new(Algorithm::RS256);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&[AUDIENCE]);
    jsonwebtoken::decode::<serde_json::Value>(token, &s.decoding, &v).ok().map(|d| d.claims)
}

async fn validate(State(s): State<Arc<AuthState>>, headers: HeaderMap) -> Response {
    s.calls.validate.fetch_add(1, Ordering::Relaxed);
    let Some(claims) = bearer_claims(&s, &headers) else { return error(StatusCode::UNAUTHORIZED, "invalid_token") };
    let sid = claims["sid"].as_str().unwrap_or_default().to_string();
    if s.revoked_sessions.lock().map_or(true, |r| r.contains(&sid)) {
        return error(StatusCode::UNAUTHORIZED, "session_revoked");
    }
    Json(serde_json::json!({ "valid": true, "sub": claims["sub"], "sid": sid })).into_response()
}

#[derive(Deserialize)]
struct Introspect {
    token: String,
}

async fn introspect(State(s): State<Arc<AuthState>>, Json(body): Json<Introspect>) -> Json<serde_json::Value> {
    s.calls.introspect.fetch_add(1, Ordering::Relaxed);
    let found = DEMO_API_KEYS
        .iter()
        .find(|(k, _)| *k == body.token)
        .and_then(|(_, sub)| DEMO_USERS.iter().find(|u| u.sub == *sub));
    match found {
        Some(u) => Json(serde_json::json!({
            "active": true, "sub": u.sub, "email": u.email, "roles": u.roles,
            "token_type": "api_key", "exp": crate::tokens::now() + 86_400,
        })),
        None => Json(serde_json::json!({ "active": false })),
    }
}

async fn logout(State(s): State<Arc<AuthState>>, headers: HeaderMap) -> Response {
    let Some(claims) = bearer_claims(&s, &headers) else { return error(StatusCode::UNAUTHORIZED, "invalid_token") };
    if let (Some(sid), Ok(mut revoked)) = (claims["sid"].as_str(), s.revoked_sessions.lock()) {
        revoked.insert(sid.to_string());
    }
    StatusCode::NO_CONTENT.into_response()
}
