//! Assembling a [`Decider`] from the configuration and its backends (Redis and HTTP in
//! production, `backend::memory` in tests).

use std::sync::Arc;

use authz_core::provider::Providers;

use super::Decider;
use crate::backend::memory::{MemoryAuth, MemoryKv, MemoryLeases};
use crate::backend::{AuthService, LeaseStore, SharedKv};
use crate::config::Config;
use crate::credentials::failures::FailureLimiter;
use crate::credentials::identity_cache::IdentityCache;
use crate::credentials::introspect::{IntrospectionBudget, Introspector};
use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::RevocationHub;
use crate::credentials::session::SessionChecker;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::quota::Quota;

/// What `Check` keeps outside the process.
pub struct Backends {
    /// The identity cache, the API-key cache, used action-token `jti`s.
    pub kv: Arc<dyn SharedKv>,
    pub auth: Arc<dyn AuthService>,
    pub leases: Arc<dyn LeaseStore>,
}

impl Backends {
    /// Everything in this process, the auth service answering from `auth`.
    pub fn in_memory(auth: MemoryAuth) -> Self {
        Self { kv: Arc::new(MemoryKv::default()), auth: Arc::new(auth), leases: Arc::new(MemoryLeases::default()) }
    }
}

/// The parts of a [`Decider`] that live beside it (key refresh, policy reload, revocation
/// subscription).
pub struct Shared {
    pub keys: KeyStores,
    pub policy: Arc<PolicyStore>,
    pub revocations: Arc<RevocationHub>,
    pub metrics: Arc<Metrics>,
}

impl Decider {
    pub fn new(config: &Config, shared: Shared, backends: Backends) -> Self {
        let Shared { keys, policy, revocations, metrics } = shared;
        let kv = backends.kv;
        let quota =
            Quota::new(backends.leases, config.quota.clone(), config.tenant_claim.clone(), Arc::clone(&metrics));
        let budget = IntrospectionBudget::new(
            config.api_keys.max_concurrent_introspections,
            config.api_keys.introspection_rate,
            config.api_keys.introspection_burst,
        );
        Decider {
            keys,
            cache: IdentityCache::new(
                config.cache.memory_capacity,
                Arc::clone(&kv),
                config.cache.max_ttl,
                Arc::clone(&metrics),
            ),
            introspector: Introspector::new(
                Arc::clone(&backends.auth),
                Arc::clone(&kv),
                config.api_keys.positive_ttl,
                config.api_keys.negative_ttl,
                Arc::clone(&metrics),
                budget,
            ),
            sessions: SessionChecker::new(backends.auth, config.session_cache_ttl, Arc::clone(&metrics)),
            providers: Providers::from_settings(&config.shared_settings()),
            strip: config.strip_rules(),
            policy,
            revocations,
            quota: Arc::new(quota),
            tenant_claim: config.tenant_claim.clone(),
            // Used action-token `jti`s live next to the cached identities.
            action_jtis: config.action_tokens.single_use.then_some(kv),
            api_key_format: config.api_keys.format.clone(),
            failures: FailureLimiter::new(config.failed_credentials.per_client, config.failed_credentials.window),
            metrics,
        }
    }
}
