//! The keys the sidecar verifies with, and pushes to the filters.
//!
//! Public keys come from a JWKS ([`KeySource`]: the auth service's, another URL, OpenID
//! Connect discovery, a file or inline), read at start, on an interval, and on an unknown
//! `kid` (single-flight and rate-limited so a flood of random `kid`s makes at most one fetch
//! per `minRefreshInterval`). A failed fetch keeps the last good set. The platform's
//! HMAC secret (`JWT_SECRET`), if set, is added as a kid-less HS256 key. Every change is
//! published on a `watch` channel that the control streams follow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use authz_core::KeySet;
use authz_core::keys::Source;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use tokio::sync::{Mutex, watch};
use tracing::{info, warn};

use crate::metrics::Metrics;

/// The keys in force.
#[derive(Debug, Default)]
pub struct KeyState {
    /// Bumped on every change.
    pub version: u64,
    pub keys: KeySet,
    /// What authenticated filters receive: the JWKS plus the HMAC key as an `oct` JWK.
    pub jwks_json: String,
    /// What unauthenticated subscribers receive: the asymmetric keys only (no `oct` key,
    /// whether ours or one the JWKS itself carried).
    pub public_jwks_json: String,
    /// True once a JWKS was fetched successfully (HMAC-only verification needs none).
    pub jwks_loaded: bool,
}

/// Why a JWKS fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("JWKS request failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("JWKS answered HTTP {0}")]
    Status(u16),
    #[error("JWKS document refused: {0}")]
    Keys(#[from] authz_core::keys::KeyError),
    #[error("JWKS document is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("JWKS source: {0}")]
    Discovery(String),
}

/// Where the JWKS comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS URL (the auth service's, or `jwks.url`).
    Url(String),
    /// OpenID Connect discovery: `{issuer}/.well-known/openid-configuration`, then its `jwks_uri`.
    Discovery(String),
    /// A file, re-read when it changes.
    File(std::path::PathBuf),
    /// The document itself.
    Inline(String),
}

impl KeySource {
    /// Symmetric keys are taken only from local sources (see `authz_core::keys::Source`).
    fn trust(&self) -> Source {
        match self {
            KeySource::Url(_) | KeySource::Discovery(_) => Source::Remote,
            KeySource::File(_) | KeySource::Inline(_) => Source::Local,
        }
    }
}

/// The part of an OpenID Connect discovery document we use (OpenID Connect Discovery 1.0 §3).
#[derive(serde::Deserialize)]
struct Discovered {
    issuer: String,
    jwks_uri: String,
}

pub struct KeyStore {
    /// The provider these keys are for (`default`, or a `providers[].name`).
    provider: &'static str,
    tx: watch::Sender<Arc<KeyState>>,
    http: reqwest::Client,
    source: KeySource,
    hmac_secret: Option<Vec<u8>>,
    hmac_algorithms: Vec<Algorithm>,
    min_refresh: Duration,
    /// Held while fetching (single flight); remembers when the last fetch for an unknown
    /// `kid` started. Background refreshes do not count against that budget, so a key
    /// published just after a background refresh is still fetched on first use.
    fetch: Mutex<Option<Instant>>,
    metrics: Arc<Metrics>,
}

impl KeyStore {
    pub fn new(
        http: reqwest::Client,
        source: KeySource,
        hmac_secret: Option<Vec<u8>>,
        hmac_algorithms: Vec<Algorithm>,
        min_refresh: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut initial = KeyState::default();
        if let Some(secret) = &hmac_secret {
            for alg in &hmac_algorithms {
                initial.keys.add_hmac_secret(secret, *alg);
            }
            initial.jwks_json = combined_jwks(&[], Some(secret), &hmac_algorithms);
            initial.public_jwks_json = combined_jwks(&[], None, &[]);
            initial.version = 1;
        }
        let (tx, _) = watch::channel(Arc::new(initial));
        let provider = authz_core::provider::DEFAULT;
        let store = Self {
            provider,
            tx,
            http,
            source,
            hmac_secret,
            hmac_algorithms,
            min_refresh,
            fetch: Mutex::new(None),
            metrics,
        };
        store.zero_metrics();
        store
    }

    /// This provider's fetch and skipped-key series, at 0 until something happens.
    fn zero_metrics(&self) {
        for result in ["ok", "error"] {
            for reason in ["startup", "interval", "unknown_kid"] {
                let _ = self.metrics.jwks_fetches.get_or_create(&vec![
                    ("provider", self.provider),
                    ("result", result),
                    ("reason", reason),
                ]);
            }
        }
        let _ = self.metrics.jwks_keys_skipped.get_or_create(&vec![("provider", self.provider)]);
    }

    /// The same store, for provider `name` (its logs and metrics name it). Provider names are
    /// configuration, so the few of them live as long as the process.
    pub fn named(mut self, name: &str) -> Self {
        self.provider = Box::leak(name.to_string().into_boxed_str());
        self.zero_metrics();
        self
    }

    pub fn provider(&self) -> &'static str {
        self.provider
    }

    pub fn source(&self) -> &KeySource {
        &self.source
    }

    pub fn current(&self) -> Arc<KeyState> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<KeyState>> {
        self.tx.subscribe()
    }

    /// Fetches the JWKS now (waiting for a fetch already running instead of starting another).
    pub async fn refresh(&self, reason: &'static str) -> Result<(), FetchError> {
        let _single_flight = self.fetch.lock().await;
        let result = self.fetch_and_publish().await;
        let label = if result.is_ok() { "ok" } else { "error" };
        self.metrics
            .jwks_fetches
            .get_or_create(&vec![("provider", self.provider), ("result", label), ("reason", reason)])
            .inc();
        result
    }

    /// For a token with an unknown `kid`: fetch unless a fetch started less than
    /// `minRefreshInterval` ago. Concurrent callers share one fetch. Returns true if the keys
    /// may have changed (the caller should retry verification).
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        let before = self.current().version;
        let mut last = self.fetch.lock().await;
        if self.current().version != before {
            // Someone else fetched while we waited for the lock.
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return false;
        }
        *last = Some(Instant::now());
        let result = self.fetch_and_publish().await;
        let label = if result.is_ok() { "ok" } else { "error" };
        let labels = vec![("provider", self.provider), ("result", label), ("reason", "unknown_kid")];
        self.metrics.jwks_fetches.get_or_create(&labels).inc();
        if let Err(e) = &result {
            warn!(provider = self.provider, error = %e, "JWKS fetch for an unknown kid failed; keeping the last good keys");
        }
        result.is_ok()
    }

    async fn get(&self, url: &str) -> Result<String, FetchError> {
        let resp = self.http.get(url).send().await?;
        if !resp.status().is_success() {
            return Err(FetchError::Status(resp.status().as_u16()));
        }
        Ok(resp.text().await?)
    }

    /// The JWKS document from the configured source.
    async fn document(&self) -> Result<String, FetchError> {
        match &self.source {
            KeySource::Url(url) => self.get(url).await,
            KeySource::Discovery(issuer) => {
                let url = format!("{}/.well-known/openid-configuration", issuer.trim_end_matches('/'));
                let found: Discovered = serde_json::from_str(&self.get(&url).await?)?;
                // OpenID Connect Discovery §4.3: the issuer must be exactly the one asked for,
                // or another party's keys could be taken for this issuer's.
                if found.issuer != *issuer {
                    return Err(FetchError::Discovery(format!(
                        "the document names issuer {:?}, not {issuer:?}",
                        found.issuer
                    )));
                }
                if !found.jwks_uri.starts_with("https://") && !found.jwks_uri.starts_with("http://") {
                    return Err(FetchError::Discovery("jwks_uri is not an http(s) URL".into()));
                }
                self.get(&found.jwks_uri).await
            }
            KeySource::File(path) => {
                let p = path.clone();
                tokio::task::spawn_blocking(move || std::fs::read_to_string(p))
                    .await
                    .map_err(|e| FetchError::Discovery(e.to_string()))?
                    .map_err(|e| FetchError::Discovery(format!("cannot read {}: {e}", path.display())))
            }
            KeySource::Inline(doc) => Ok(doc.clone()),
        }
    }

    async fn fetch_and_publish(&self) -> Result<(), FetchError> {
        let body = self.document().await?;
        self.publish(&body)
    }

    /// Takes `body` (a JWKS document from this store's source) as the keys in force.
    pub fn publish(&self, body: &str) -> Result<(), FetchError> {
        let mut keys = KeySet::new();
        // Keys we cannot use are skipped (and named below); none usable keeps the last good set.
        let loaded = keys.extend_from_jwks_json(body, self.source.trust())?;
        let doc: serde_json::Value = serde_json::from_str(body)?;
        let served = doc.get("keys").and_then(|k| k.as_array()).cloned().unwrap_or_default();
        // Only the keys taken are passed on, so the filters never see one we refused.
        let public: Vec<serde_json::Value> = loaded.used.iter().filter_map(|i| served.get(*i).cloned()).collect();
        if let Some(secret) = &self.hmac_secret {
            for alg in &self.hmac_algorithms {
                keys.add_hmac_secret(secret, *alg);
            }
        }
        let jwks_json = combined_jwks(&public, self.hmac_secret.as_deref(), &self.hmac_algorithms);
        let asymmetric: Vec<serde_json::Value> =
            public.iter().filter(|k| k.get("kty").and_then(|t| t.as_str()) != Some("oct")).cloned().collect();
        let public_jwks_json = combined_jwks(&asymmetric, None, &[]);
        let changed = self.tx.send_if_modified(|state| {
            if state.jwks_loaded && state.jwks_json == jwks_json {
                return false;
            }
            let version = state.version + 1;
            *state = Arc::new(KeyState { version, keys, jwks_json, public_jwks_json, jwks_loaded: true });
            true
        });
        if changed {
            let state = self.current();
            let kids = state.keys.kids().collect::<Vec<_>>();
            info!(provider = self.provider, version = state.version, ?kids, "keys updated");
            // Once per new document: a refresh of the same document logs nothing.
            for s in &loaded.skipped {
                warn!(provider = self.provider, key = %s, "JWKS key skipped");
            }
            let skipped = i64::try_from(loaded.skipped.len()).unwrap_or(i64::MAX);
            self.metrics.jwks_keys_skipped.get_or_create(&vec![("provider", self.provider)]).set(skipped);
        }
        Ok(())
    }

    /// Keeps the keys fresh until the process ends.
    pub fn spawn_refresher(self: &Arc<Self>, interval: Duration) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            let mut reason = "startup";
            let mut retry = Duration::from_millis(250);
            loop {
                match me.refresh(reason).await {
                    Ok(()) => {
                        retry = Duration::from_millis(250);
                        reason = "interval";
                        tokio::time::sleep(interval).await;
                    }
                    Err(e) => {
                        // Until the first success, retry quickly with backoff; after it, the
                        // last good keys stay in force and we retry at the same pace.
                        let provider = me.provider;
                        warn!(provider, error = %e, retry_in = ?retry, "JWKS fetch failed; keeping the last good keys");
                        tokio::time::sleep(retry.min(interval)).await;
                        retry = (retry * 2).min(Duration::from_secs(30));
                    }
                }
            }
        });
    }
}

/// A JWKS holding `public` keys and, if given, the HMAC secret as kid-less `oct` keys (one
/// per accepted algorithm, since a JWK names one).
fn combined_jwks(public: &[serde_json::Value], hmac_secret: Option<&[u8]>, algs: &[Algorithm]) -> String {
    let mut keys = public.to_vec();
    if let Some(secret) = hmac_secret {
        let k = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        for alg in algs {
            keys.push(serde_json::json!({"kty": "oct", "alg": format!("{alg:?}"), "use": "sig", "k": k}));
        }
    }
    serde_json::json!({ "keys": keys }).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    const JWKS: &str = r#"{"keys": [{"kty": "OKP", "kid": "ed-1", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

    fn store(source: KeySource) -> KeyStore {
        KeyStore::new(
            reqwest::Client::new(),
            source,
            None,
            vec![],
            Duration::from_secs(1),
            Arc::new(Metrics::default()),
        )
    }

    #[tokio::test]
    async fn a_file_is_read_again_when_it_changes_and_inline_keys_load() {
        let file = std::env::temp_dir().join(format!("authz-jwks-{}.json", std::process::id()));
        std::fs::write(&file, JWKS).unwrap();
        let keys = store(KeySource::File(file.clone()));
        keys.refresh("startup").await.unwrap();
        assert!(keys.current().keys.has_kid("ed-1") && keys.current().jwks_loaded);
        let version = keys.current().version;
        keys.refresh("interval").await.unwrap();
        assert_eq!(keys.current().version, version, "an unchanged file changes nothing");
        std::fs::write(&file, JWKS.replace("ed-1", "ed-2")).unwrap();
        keys.refresh("interval").await.unwrap();
        assert!(keys.current().keys.has_kid("ed-2") && !keys.current().keys.has_kid("ed-1"));
        // A file with a secret in it: local, so taken.
        std::fs::write(&file, r#"{"keys": [{"kty": "oct", "kid": "s", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQ"}]}"#).unwrap();
        keys.refresh("interval").await.unwrap();
        assert!(keys.current().keys.has_kid("s"));
        std::fs::remove_file(&file).unwrap();
        assert!(keys.refresh("interval").await.is_err(), "a file gone is a failed fetch");
        assert!(keys.current().keys.has_kid("s"), "the last good keys stay");
        let inline = store(KeySource::Inline(JWKS.into()));
        inline.refresh("startup").await.unwrap();
        assert!(inline.current().keys.has_kid("ed-1"));
    }

    #[tokio::test]
    async fn discovery_takes_the_jwks_uri_of_the_named_issuer_only() {
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (b1, b2) = (base.clone(), base.clone());
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || async move { format!(r#"{{"issuer": "{b1}", "jwks_uri": "{b1}/keys"}}"#) }),
            )
            .route(
                "/other/.well-known/openid-configuration",
                get(move || async move { format!(r#"{{"issuer": "{b2}", "jwks_uri": "{b2}/keys"}}"#) }),
            )
            .route("/keys", get(|| async { JWKS }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let keys = store(KeySource::Discovery(base.clone()));
        keys.refresh("startup").await.unwrap();
        assert!(keys.current().keys.has_kid("ed-1"));
        // A document naming another issuer than the one asked for is refused.
        let other = store(KeySource::Discovery(format!("{base}/other")));
        let err = other.refresh("startup").await.unwrap_err().to_string();
        assert!(err.contains("names issuer"), "{err}");
        assert!(!other.current().jwks_loaded);
    }

    #[test]
    fn combined_jwks_round_trips_through_the_filter_parser() {
        let json = combined_jwks(&[], Some(b"0123456789abcdef\xff\x00"), &[Algorithm::HS256, Algorithm::HS512]);
        let mut ks = KeySet::new();
        ks.extend_from_jwks_json(&json, Source::Local).unwrap();
        assert!(ks.find(None, Algorithm::HS256).is_some());
        assert!(ks.find(None, Algorithm::HS512).is_some());
        assert!(ks.find(None, Algorithm::HS384).is_none());
    }
}
