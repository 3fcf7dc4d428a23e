//! A development stand-in for the platform's auth service, speaking its contract:
//!
//! - `POST /auth/login` `{"username","password"}` → `{"access_token","refresh_token","token_type":"Bearer","expires_in"}`
//! - `GET /.well-known/jwks.json` → the public signing keys
//! - `GET /auth/validate` (Bearer) → 200 `{"valid":true,...}` while the session lives, else 401
//! - `POST /auth/introspect` `{"token"}` → `{"active":...}` for API keys (RFC 7662 shape)
//! - `POST /auth/logout` (Bearer) → 204, ends the session
//!
//! Demo users and API keys are fixed (see [`DEMO_USERS`], [`DEMO_API_KEYS`]). It signs RS256
//! with the development keys from `tests/fixtures` (one `kid` per algorithm; `dev-1` by default)
//! and can rotate keys ([`AuthState::publish`], [`AuthState::retire`], [`AuthState::activate`]). It counts the calls it receives so tests
//! can assert caching. It is not an auth service: no password hashing, no persistence.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use authz_core::revocation::Revocation;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use jsonwebtoken::jwk::{Jwk, KeyAlgorithm, PublicKeyUse};
use std::str::FromStr;

use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::tokens::{AUDIENCE, DEV_KID, ISSUER, SIGNING_KEYS, encoding_key, sign_kid, user_claims};

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

/// The stand-in's state, shared by its handlers and by tests in the same process.
pub struct AuthState {
    pub calls: Calls,
    /// Sessions ended by logout.
    revoked_sessions: Mutex<HashSet<String>>,
    /// `kid`s in the JWKS document.
    published: Mutex<Vec<String>>,
    /// More JWKs served as they are, after the published ones (keys a gateway cannot use, as
    /// real identity providers' documents hold them).
    extra_keys: Mutex<Vec<serde_json::Value>>,
    /// The `kid` that login signs with.
    active: Mutex<String>,
    /// Milliseconds every answer waits first (tests make the auth service slow with it).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Where revocations are published and stored (the README's contract): one Redis URL, or
    /// a Redis Cluster's seed URLs separated by commas.
    redis: Option<String>,
}

/// The revocation channel and key prefix of the contract (the sidecar's defaults).
pub const REVOCATION_CHANNEL: &str = "authz:revocations";
pub const REVOCATION_PREFIX: &str = "authz:revoked:";

/// The stored key of a revocation: `<prefix><kind>:<id>`.
pub fn revocation_key(r: &Revocation) -> String {
    let (kind, id) = match r {
        Revocation::Token { jti, .. } => ("token", jti.as_str()),
        Revocation::Session { sid, .. } => ("session", sid.as_str()),
        Revocation::User { sub, .. } => ("user", sub.as_str()),
        Revocation::ApiKey { sha256, .. } => ("api_key", sha256.as_str()),
    };
    format!("{REVOCATION_PREFIX}{kind}:{id}")
}

impl AuthState {
    fn new(redis: Option<String>) -> Self {
        Self {
            calls: Calls::default(),
            revoked_sessions: Mutex::default(),
            published: Mutex::new(initial_kids()),
            extra_keys: Mutex::default(),
            active: Mutex::new(DEV_KID.to_string()),
            delay_ms: std::sync::atomic::AtomicU64::new(0),
            redis,
        }
    }

    /// Makes every answer wait `delay` first (zero: answer at once).
    pub fn set_delay(&self, delay: std::time::Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// Stores a revocation (expiring with the last token it can match) and publishes it, as a
    /// real auth service must. `publish: false` stores only: a message lost on the way.
    pub async fn revoke(&self, r: &Revocation, publish: bool) -> anyhow::Result<()> {
        let url = self.redis.as_ref().ok_or_else(|| anyhow::anyhow!("stand-in has no Redis"))?;
        let json = serde_json::to_string(r)?;
        let ttl = r.expires_at().saturating_sub(crate::tokens::now()).max(1);
        let mut set = redis::cmd("SET");
        set.arg(revocation_key(r)).arg(&json).arg("EX").arg(ttl);
        let mut publish_cmd = redis::cmd("PUBLISH");
        publish_cmd.arg(REVOCATION_CHANNEL).arg(&json);
        if url.contains(',') {
            // A cluster: the key goes to its slot's node; a PUBLISH reaches every node.
            let seeds: Vec<&str> = url.split(',').collect();
            let mut conn = redis::cluster::ClusterClient::new(seeds)?.get_async_connection().await?;
            set.query_async::<()>(&mut conn).await?;
            if publish {
                publish_cmd.query_async::<i64>(&mut conn).await?;
            }
        } else {
            let mut conn = redis::Client::open(url.as_str())?.get_multiplexed_async_connection().await?;
            set.query_async::<()>(&mut conn).await?;
            if publish {
                publish_cmd.query_async::<i64>(&mut conn).await?;
            }
        }
        Ok(())
    }

    /// Revokes an API key (by its SHA-256, as the contract says).
    pub async fn revoke_api_key(&self, key: &str) -> anyhow::Result<()> {
        use sha2::Digest as _;
        let sha256 = hex::encode(sha2::Sha256::digest(key.as_bytes()));
        self.revoke(&Revocation::ApiKey { sha256, expires_at: crate::tokens::now() + 86_400 }, true).await
    }

    /// Adds `kid` to the JWKS (the start of a rotation's overlap window).
    pub fn publish(&self, kid: &str) {
        if let Ok(mut p) = self.published.lock()
            && !p.iter().any(|k| k == kid)
        {
            p.push(kid.to_string());
        }
    }

    /// Removes `kid` from the JWKS (the end of the overlap window).
    pub fn retire(&self, kid: &str) {
        if let Ok(mut p) = self.published.lock() {
            p.retain(|k| k != kid);
        }
    }

    /// Makes login sign with `kid`.
    pub fn activate(&self, kid: &str) {
        if let Ok(mut a) = self.active.lock() {
            *a = kid.to_string();
        }
    }

    /// Ends a session, as logout does.
    pub fn revoke_session(&self, sid: &str) {
        if let Ok(mut r) = self.revoked_sessions.lock() {
            r.insert(sid.to_string());
        }
    }

    /// Serves `keys` in the JWKS document too, after the published ones (empty: none).
    pub fn serve_extra_keys(&self, keys: Vec<serde_json::Value>) {
        if let Ok(mut k) = self.extra_keys.lock() {
            *k = keys;
        }
    }

    /// The published `kid`s.
    pub fn published(&self) -> Vec<String> {
        self.published.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn jwks(&self) -> serde_json::Value {
        let kids = self.published();
        let mut keys: Vec<serde_json::Value> =
            kids.iter().filter_map(|k| public_jwk(k).ok()).filter_map(|k| serde_json::to_value(k).ok()).collect();
        keys.extend(self.extra_keys.lock().map(|k| k.clone()).unwrap_or_default());
        serde_json::json!({ "keys": keys })
    }

    /// Verifies a token signed by a published key, as the real service would.
    fn verify(&self, token: &str) -> Option<serde_json::Value> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        let kid = header.kid?;
        if !self.published.lock().ok()?.contains(&kid) {
            return None;
        }
        let key = DecodingKey::from_jwk(&public_jwk(&kid).ok()?).ok()?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[ISSUER]);
        v.set_audience(&[AUDIENCE]);
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).ok().map(|d| d.claims)
    }
}

/// A running stand-in. [`AuthStandin::stop`] and [`AuthStandin::restart`] simulate an outage.
pub struct AuthStandin {
    pub addr: SocketAddr,
    pub state: Arc<AuthState>,
    server: Option<Server>,
}

struct Server {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl AuthStandin {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and closes every connection; the port refuses connections after this.
    pub async fn stop(&mut self) {
        if let Some(s) = self.server.take() {
            let _ = s.stop.send(());
            let abort = s.task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), s.task).await.is_err() {
                abort.abort();
            }
        }
    }

    /// Serves again on the same address with the same state.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await;
        self.server = Some(serve(self.addr, Arc::clone(&self.state)).await?.1);
        Ok(())
    }
}

impl Drop for AuthStandin {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.task.abort();
        }
    }
}

async fn serve(addr: SocketAddr, state: Arc<AuthState>) -> anyhow::Result<(SocketAddr, Server)> {
    let app = Router::new()
        .route("/auth/login", post(login))
        .route("/.well-known/jwks.json", get(jwks_handler))
        .route("/.well-known/openid-configuration", get(discovery_handler))
        .route("/auth/validate", get(validate))
        .route("/auth/introspect", post(introspect))
        .route("/auth/logout", post(logout))
        .layer(axum::middleware::from_fn_with_state(Arc::clone(&state), slow))
        .with_state(state);
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((addr, Server { stop, task }))
}

/// Starts the stand-in on `addr` (port 0 for an ephemeral one). With `redis_url`, logout
/// publishes and stores revocations there.
pub async fn spawn(addr: SocketAddr, redis_url: Option<&str>) -> anyhow::Result<AuthStandin> {
    let state = Arc::new(AuthState::new(redis_url.map(str::to_string)));
    let (addr, server) = serve(addr, Arc::clone(&state)).await?;
    Ok(AuthStandin { addr, state, server: Some(server) })
}

/// The public JWK of a development `kid`.
pub fn public_jwk(kid: &str) -> anyhow::Result<Jwk> {
    let (alg, enc) = encoding_key(kid)?;
    let mut jwk = Jwk::from_encoding_key(&enc, alg)?;
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.key_algorithm = Some(KeyAlgorithm::from_str(&format!("{alg:?}"))?);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    Ok(jwk)
}

/// The `kid`s published at start: every algorithm's key except the rotation key `dev-2`.
pub fn initial_kids() -> Vec<String> {
    SIGNING_KEYS.iter().map(|(k, _, _)| k.to_string()).filter(|k| k != "dev-2").collect()
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(serde_json::json!({ "error": code }))).into_response()
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

/// The configured delay, before every answer.
async fn slow(State(s): State<Arc<AuthState>>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let ms = s.delay_ms.load(std::sync::atomic::Ordering::Relaxed);
    if ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    next.run(req).await
}

async fn login(State(s): State<Arc<AuthState>>, Json(body): Json<Login>) -> Response {
    s.calls.login.fetch_add(1, Ordering::Relaxed);
    let Some(user) = DEMO_USERS.iter().find(|u| u.username == body.username && u.password == body.password) else {
        return error(StatusCode::UNAUTHORIZED, "invalid_credentials");
    };
    let claims = user_claims(user.sub, user.email, user.roles);
    let kid = s.active.lock().map(|k| k.clone()).unwrap_or_else(|_| DEV_KID.to_string());
    match sign_kid(&claims, &kid) {
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

/// OpenID Connect discovery, of the usual shape: the issuer is this server's own URL (as the
/// `Host` it was asked at), `jwks_uri` its JWKS.
async fn discovery_handler(headers: axum::http::HeaderMap) -> Json<serde_json::Value> {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
    let issuer = format!("http://{host}");
    Json(serde_json::json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/auth/authorize"),
        "token_endpoint": format!("{issuer}/auth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks_handler(State(s): State<Arc<AuthState>>) -> Json<serde_json::Value> {
    s.calls.jwks.fetch_add(1, Ordering::Relaxed);
    Json(s.jwks())
}

fn bearer_claims(s: &AuthState, headers: &HeaderMap) -> Option<serde_json::Value> {
    let token = headers.get("authorization")?.to_str().ok()?.strip_prefix("Bearer ")?;
    s.verify(token)
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

#[derive(Deserialize, Default)]
struct LogoutQuery {
    #[serde(default)]
    everywhere: bool,
}

/// Ends the session (`sid`), or with `?everywhere=true` every token of the user issued up to
/// now; publishes and stores the revocation.
async fn logout(State(s): State<Arc<AuthState>>, Query(q): Query<LogoutQuery>, headers: HeaderMap) -> Response {
    let Some(claims) = bearer_claims(&s, &headers) else { return error(StatusCode::UNAUTHORIZED, "invalid_token") };
    let now = crate::tokens::now();
    let exp = claims["exp"].as_u64().unwrap_or(now + 900);
    let sub = claims["sub"].as_str().unwrap_or_default().to_string();
    let sid = claims["sid"].as_str().unwrap_or_default().to_string();
    let revocation = if q.everywhere {
        // Tokens issued up to and including this second; they live at most 15 minutes.
        Revocation::User { sub, before: now + 1, expires_at: now + 900 }
    } else {
        s.revoke_session(&sid);
        Revocation::Session { sid, expires_at: exp }
    };
    match s.revoke(&revocation, true).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "revocation_not_published"),
    }
}
