//! In-memory backends for tests: one process, no Redis, no auth service. Same contracts as the
//! production ones (expiry, single use, lease limits), none of their sharing.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use authz_core::Identity;
use authz_core::cache::digest;

use super::{AuditWriter, AuthService, LeaseStore, SharedKv};
use crate::audit::AuditEvent;
use crate::config::Limits;
use crate::quota::resources::Resources;
use crate::quota::store::{Grant, Lease, Refusal, Unavailable, Usage, now_ms};

/// A `SharedKv` in a map, with expiry.
#[derive(Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

#[tonic::async_trait]
impl SharedKv for MemoryKv {
    fn key(&self, kind: &str, digest: &[u8; 32]) -> String {
        format!("{kind}:{}", hex::encode(digest))
    }

    async fn get(&self, key: &str) -> Option<String> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|(_, until)| *until > Instant::now()).map(|(v, _)| v.clone())
    }

    async fn set_ex(&self, key: &str, value: &str, ttl: Duration) {
        if ttl.as_secs() == 0 {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key.to_string(), (value.to_string(), Instant::now() + ttl));
        }
    }

    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, ()> {
        let mut entries = self.entries.lock().map_err(|_| ())?;
        let now = Instant::now();
        if entries.get(key).is_some_and(|(_, until)| *until > now) {
            return Ok(false);
        }
        entries.insert(key.to_string(), ("1".into(), now + ttl.max(Duration::from_secs(1))));
        Ok(true)
    }
}

/// An auth service that knows a few API keys and live sessions.
#[derive(Default)]
pub struct MemoryAuth {
    api_keys: HashMap<String, Identity>,
    live_sessions: HashSet<[u8; 32]>,
    /// Every call fails (the service is away).
    down: bool,
}

impl MemoryAuth {
    pub fn with_api_key(mut self, key: &str, identity: Identity) -> Self {
        self.api_keys.insert(key.to_string(), identity);
        self
    }

    /// The service is away: every call fails.
    pub fn down() -> Self {
        Self { down: true, ..Self::default() }
    }

    /// The session of `token` is alive.
    pub fn with_session(mut self, token: &str) -> Self {
        self.live_sessions.insert(digest(token));
        self
    }
}

#[tonic::async_trait]
impl AuthService for MemoryAuth {
    async fn introspect(&self, key: &str) -> Result<Option<Identity>, String> {
        if self.down {
            return Err("auth service down".into());
        }
        Ok(self.api_keys.get(key).cloned())
    }

    async fn session_alive(&self, token: &str) -> Result<bool, String> {
        if self.down {
            return Err("auth service down".into());
        }
        Ok(self.live_sessions.contains(&digest(token)))
    }
}

/// One live lease.
struct Held {
    user: String,
    lab: Option<String>,
    req: Resources,
    until_ms: u64,
}

/// Quota leases in a map, with the Redis store's limits and per-minute counts.
#[derive(Default)]
pub struct MemoryLeases {
    state: Mutex<LeaseState>,
}

#[derive(Default)]
struct LeaseState {
    leases: HashMap<String, Held>,
    /// (scope, id, minute) → submissions.
    submissions: HashMap<(String, String, u64), u64>,
}

impl LeaseState {
    fn used(&self, scope: &str, id: &str, now: u64) -> [u64; 3] {
        let mut u = [0; 3];
        for h in self.leases.values().filter(|h| h.until_ms > now) {
            let holds = match scope {
                "user" => h.user == id,
                _ => h.lab.as_deref() == Some(id),
            };
            if holds {
                u[0] += h.req.cpu_cores;
                u[1] += h.req.gpus;
                u[2] += h.req.memory_mb;
            }
        }
        u
    }

    fn refusal(&self, scope: &str, id: &str, limits: &Limits, req: Resources, now: u64) -> Option<Refusal> {
        let used = self.used(scope, id, now);
        let wanted = [req.cpu_cores, req.gpus, req.memory_mb];
        let limits_of = [limits.cpu_cores, limits.gpus, limits.memory_gb.map(|g| g.saturating_mul(1024))];
        let names = ["cpu_cores", "gpus", "memory_mb"];
        for i in 0..3 {
            if let Some(limit) = limits_of[i]
                && used[i] + wanted[i] > limit
            {
                let (in_use, requested) = (used[i], wanted[i]);
                return Some(Refusal { scope: scope.into(), resource: names[i].into(), limit, in_use, requested });
            }
        }
        let n = self.submissions.get(&(scope.to_string(), id.to_string(), now / 60_000)).copied().unwrap_or(0);
        limits.submissions_per_minute.filter(|limit| n + 1 > *limit).map(|limit| Refusal {
            scope: scope.into(),
            resource: "submissions_per_minute".into(),
            limit,
            in_use: n,
            requested: 1,
        })
    }
}

#[tonic::async_trait]
impl LeaseStore for MemoryLeases {
    async fn acquire(
        &self,
        user: &str,
        user_limits: &Limits,
        lab: Option<(&str, &Limits)>,
        req: Resources,
        ttl: Duration,
    ) -> Result<Grant, Unavailable> {
        let mut s = self.state.lock().map_err(|_| Unavailable("poisoned".into()))?;
        let now = now_ms();
        if let Some(r) = s.refusal("user", user, user_limits, req, now) {
            return Ok(Grant::Refused(r));
        }
        if let Some((id, limits)) = lab
            && let Some(r) = s.refusal("lab", id, limits, req, now)
        {
            return Ok(Grant::Refused(r));
        }
        let minute = now / 60_000;
        *s.submissions.entry(("user".into(), user.into(), minute)).or_default() += 1;
        if let Some((id, _)) = lab {
            *s.submissions.entry(("lab".into(), id.into(), minute)).or_default() += 1;
        }
        let lease_id = uuid::Uuid::new_v4().to_string();
        let until_ms = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let held = Held { user: user.into(), lab: lab.map(|(id, _)| id.to_string()), req, until_ms };
        s.leases.insert(lease_id.clone(), held);
        Ok(Grant::Granted { lease_id, expires_at_ms: until_ms })
    }

    async fn release(&self, lease_id: &str) -> Result<bool, Unavailable> {
        let mut s = self.state.lock().map_err(|_| Unavailable("poisoned".into()))?;
        let now = now_ms();
        Ok(s.leases.remove(lease_id).is_some_and(|h| h.until_ms > now))
    }

    async fn renew(&self, lease_id: &str, ttl: Duration) -> Result<Option<u64>, Unavailable> {
        let mut s = self.state.lock().map_err(|_| Unavailable("poisoned".into()))?;
        let now = now_ms();
        let until = now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        Ok(s.leases.get_mut(lease_id).filter(|h| h.until_ms > now).map(|h| {
            h.until_ms = until;
            until
        }))
    }

    async fn usage(&self, scope: &str, id: &str) -> Result<Usage, Unavailable> {
        let s = self.state.lock().map_err(|_| Unavailable("poisoned".into()))?;
        let now = now_ms();
        let [cpu_cores, gpus, memory_mb] = s.used(scope, id, now);
        let leases = s
            .leases
            .iter()
            .filter(|(_, h)| {
                h.until_ms > now && if scope == "user" { h.user == id } else { h.lab.as_deref() == Some(id) }
            })
            .map(|(lease_id, h)| Lease {
                lease_id: lease_id.clone(),
                cpu_cores: h.req.cpu_cores,
                gpus: h.req.gpus,
                memory_mb: h.req.memory_mb,
                expires_at_ms: h.until_ms,
            })
            .collect();
        let submissions_this_minute =
            s.submissions.get(&(scope.to_string(), id.to_string(), now / 60_000)).copied().unwrap_or(0);
        Ok(Usage { cpu_cores, gpus, memory_mb, submissions_this_minute, leases })
    }
}

/// Audit events kept in order, for assertions.
#[derive(Default)]
pub struct MemoryAudit {
    pub events: Mutex<Vec<AuditEvent>>,
}

impl AuditWriter for MemoryAudit {
    fn submit(&self, event: AuditEvent) {
        if let Ok(mut events) = self.events.lock() {
            events.push(event);
        }
    }
}
