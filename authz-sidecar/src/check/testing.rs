//! A whole `Check` service in one process, on the in-memory backends: the sidecar's real
//! decision code with no Redis, no auth service and no network, for table tests here and for
//! the property test that holds the filter's verdicts against the sidecar's.

use std::sync::Arc;

use authz_core::revocation::RevocationSet;
use authz_proto::authz::v1::{ControlEvent, KeySnapshot, PolicySnapshot, RevocationUpdate, control_event};
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};

use super::{AuthzService, Backends, Decider, Shared};
use crate::backend::memory::MemoryAuth;
use crate::config::{Config, Env};
use crate::credentials::keystore::KeySource;
use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::RevocationHub;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;

struct NoEnv;

impl Env for NoEnv {
    fn var(&self, _: &str) -> Option<String> {
        None
    }
}

/// A sidecar in memory.
pub struct InMemorySidecar {
    pub decider: Arc<Decider>,
    pub revocations: Arc<RevocationHub>,
    service: AuthzService,
    settings_json: String,
}

impl InMemorySidecar {
    /// `config` is the sidecar's YAML (its `policyFile` must exist), `secret` the HMAC
    /// secret (`JWT_SECRET`); the revocation set starts loaded and empty.
    pub fn new(config: &str, secret: &str, auth: MemoryAuth) -> anyhow::Result<Self> {
        authz_core::crypto::ensure_provider();
        let mut config = Config::from_yaml(config, "in-memory", &NoEnv)?;
        config.jwt_secret = Some(secret.as_bytes().to_vec());
        let metrics = Arc::new(Metrics::default());
        // Nothing listens there: a token no local key fits finds no JWKS either.
        config.jwks.url = Some("http://127.0.0.1:9/jwks".into());
        let keys = KeyStores::from_config(&config, &reqwest::Client::new(), &metrics)?;
        // Other providers' keys are inline here, taken at once.
        for store in keys.iter().skip(1) {
            if let KeySource::Inline(doc) = store.source() {
                store.publish(doc)?;
            }
        }
        let policy = Arc::new(PolicyStore::new(config.initial_policy()?));
        let revocations = Arc::new(RevocationHub::new(Arc::clone(&metrics)));
        revocations.replace(RevocationSet::new());
        let shared = Shared { keys, policy, revocations: Arc::clone(&revocations), metrics };
        let decider = Arc::new(Decider::new(&config, shared, Backends::in_memory(auth)));
        let settings_json = serde_json::to_string(&config.shared_settings())?;
        Ok(Self { service: AuthzService::new(Arc::clone(&decider)), decider, revocations, settings_json })
    }

    /// A sidecar deciding by `policy` (the policy file's YAML); `settings` is more of the
    /// sidecar's YAML (`jwt:`, `actionTokens:` ...), appended to a minimal configuration.
    pub fn with_policy(policy: &str, settings: &str, secret: &str, auth: MemoryAuth) -> anyhow::Result<Self> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let file = std::env::temp_dir().join(format!("authz-in-memory-{}-{n}.yaml", std::process::id()));
        std::fs::write(&file, policy)?;
        let config = format!(
            "iamUrl: http://127.0.0.1:9\nredisUrl: redis://127.0.0.1:9\npolicyFile: {}\n{settings}",
            file.display()
        );
        let sidecar = Self::new(&config, secret, auth);
        let _ = std::fs::remove_file(&file);
        sidecar
    }

    /// What a control stream sends a filter first: the keys (with the HMAC secret, as to an
    /// authenticated subscriber), the policy with the shared settings, the revocation set.
    pub fn control_events(&self) -> Vec<ControlEvent> {
        let policy = self.decider.policy.current();
        let revocations = self.revocations.current();
        let facts = revocations.set.to_vec().iter().filter_map(|r| serde_json::to_string(r).ok()).collect();
        let keys = self.decider.keys.iter().map(|store| {
            let k = store.current();
            let snapshot = KeySnapshot { version: k.version, jwks_json: k.jwks_json.clone(), provider: String::new() };
            match store.provider() {
                authz_core::provider::DEFAULT => control_event::Event::Keys(snapshot),
                name => control_event::Event::ProviderKeys(KeySnapshot { provider: name.into(), ..snapshot }),
            }
        });
        keys.chain([
            control_event::Event::Policy(PolicySnapshot {
                version: policy.version.clone(),
                policy_json: policy.json.clone(),
                settings_json: self.settings_json.clone(),
            }),
            control_event::Event::Revocations(RevocationUpdate {
                version: revocations.version,
                full: true,
                revocations_json: facts,
                received_unix_micros: 0,
            }),
        ])
        .map(|e| ControlEvent { event: Some(e) })
        .collect()
    }

    /// One `Check`: `Err` is the gRPC status (`UNAVAILABLE` for an outage).
    pub async fn check(&self, request: CheckRequest) -> Result<CheckResponse, tonic::Status> {
        self.service.check(tonic::Request::new(request)).await.map(tonic::Response::into_inner)
    }
}
