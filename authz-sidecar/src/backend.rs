//! The sidecar's shared state and outside services, behind traits: what `Check` needs from
//! Redis (a key-value cache with single-use claims, quota leases, the audit stream) and from
//! the platform's auth service (API-key introspection, session validation). Each has its
//! production implementation (Redis, HTTP) and an in-memory one (`memory`), so `Check` gets
//! table tests with no Redis and no auth service. Limitador's storage traits are the model:
//! the decision code sees only the trait.

use std::time::Duration;

use authz_core::Identity;

use crate::audit::AuditEvent;
use crate::config::Limits;
use crate::quota::resources::Resources;
use crate::quota::store::{Grant, Unavailable, Usage};

pub mod http_auth;
pub mod memory;
pub mod redis_conn;
pub mod redis_kv;

/// A cache shared by the replicas, and single-use claims. A cache that cannot be reached is a
/// miss (the caller verifies locally); a claim that cannot be made is an error.
#[tonic::async_trait]
pub trait SharedKv: Send + Sync {
    /// The key of an entry of `kind` for a digest (never a credential).
    fn key(&self, kind: &str, digest: &[u8; 32]) -> String;
    async fn get(&self, key: &str) -> Option<String>;
    /// Stores `value` for `ttl` (whole seconds; nothing is stored under 1 s).
    async fn set_ex(&self, key: &str, value: &str, ttl: Duration);
    /// True for the first claim of `key` within `ttl`, false after.
    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, ()>;
}

/// The platform's auth service, as `Check` asks it.
#[tonic::async_trait]
pub trait AuthService: Send + Sync {
    /// An API key's identity (`None`: not active); `Err` when the service cannot answer.
    async fn introspect(&self, key: &str) -> Result<Option<Identity>, String>;
    /// Whether the session of a bearer token is alive; `Err` when the service cannot answer.
    async fn session_alive(&self, token: &str) -> Result<bool, String>;
}

/// Quota leases shared by the replicas (see `quota::store` for the Redis one).
#[tonic::async_trait]
pub trait LeaseStore: Send + Sync {
    /// Reserves `req` for `user` (and `lab`) for `ttl`, or says which limit refuses.
    async fn acquire(
        &self,
        user: &str,
        user_limits: &Limits,
        lab: Option<(&str, &Limits)>,
        req: Resources,
        ttl: Duration,
    ) -> Result<Grant, Unavailable>;
    /// Ends a lease; `Ok(false)` when there is none.
    async fn release(&self, lease_id: &str) -> Result<bool, Unavailable>;
    /// Extends a live lease to end `ttl` from now; `Ok(None)` when there is none.
    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Option<u64>, Unavailable>;
    /// Current use and live leases of a user (`user`) or lab (`lab`).
    async fn usage(&self, scope: &str, id: &str) -> Result<Usage, Unavailable>;
}

/// Where audit events go. Never waits and never fails a request (audit fails open).
pub trait AuditWriter: Send + Sync {
    fn submit(&self, event: AuditEvent);
}
