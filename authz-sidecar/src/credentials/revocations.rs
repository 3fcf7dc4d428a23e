//! Revocations: the auth service publishes them on a Redis pub/sub channel and stores the same
//! facts under a key prefix (with an expiry). Pub/sub is the fast path; the stored state is
//! the truth.
//!
//! The subscriber reconnects with backoff and, after every (re)subscribe, reloads the stored
//! state before trusting pub/sub again, so a revocation published while it was away is not
//! lost. Changes go to the `Check` path (through [`RevocationHub::current`]) and to every
//! filter VM over the control stream: whole snapshots on connect or resync, single facts
//! (deltas) as they arrive.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authz_core::revocation::{Revocation, RevocationSet};
use futures::StreamExt;
use redis::AsyncCommands;
use tokio::sync::{broadcast, watch};
use tracing::{info, warn};

use crate::backend::redis_conn::RedisConn;
use crate::credentials::identity_cache::unix_now;
use crate::metrics::Metrics;

/// The set in force and its version.
#[derive(Debug, Default)]
pub struct RevocationState {
    pub version: u64,
    pub set: RevocationSet,
    /// True while the subscription is live (after its resync).
    pub live: bool,
    /// True once the stored state has been loaded at least once. Before that the set is not
    /// known at all: decisions that depend on it are `UNAVAILABLE`, and no snapshot is sent to
    /// the filters (an empty one would wrongly make them trust it).
    pub synced: bool,
}

/// What changed, for the control streams.
#[derive(Debug, Clone)]
pub enum Update {
    /// The whole set changed (resync): send a snapshot.
    Full,
    /// One more fact: the set's version with it, and when it arrived on pub/sub
    /// (microseconds since the Unix epoch), which the filters measure their delay from.
    Delta { version: u64, revocation: Revocation, received_unix_micros: u64 },
}

pub struct RevocationHub {
    state: watch::Sender<Arc<RevocationState>>,
    updates: broadcast::Sender<Update>,
    metrics: Arc<Metrics>,
}

impl RevocationHub {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let (state, _) = watch::channel(Arc::new(RevocationState::default()));
        let (updates, _) = broadcast::channel(1024);
        Self { state, updates, metrics }
    }

    pub fn current(&self) -> Arc<RevocationState> {
        self.state.borrow().clone()
    }

    /// Subscribe before reading [`Self::current`] so that nothing falls in between.
    pub fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    fn apply(&self, r: Revocation, received_unix_micros: u64) {
        let mut version = 0;
        self.state.send_modify(|s| {
            // Shares the set's large base: copies only its recent layer.
            let mut set = s.set.clone();
            set.insert(&r);
            version = s.version + 1;
            *s = Arc::new(RevocationState { version, set, live: s.live, synced: s.synced });
        });
        self.metrics.revocation_events.inc();
        let _ = self.updates.send(Update::Delta { version, revocation: r, received_unix_micros });
        // The fact is on its way: now fold the set's recent layer in when it is due (a copy of
        // the whole set, once per few hundred facts), made outside the lock readers take.
        let current = self.current();
        if current.set.needs_compaction() {
            let mut set = current.set.clone();
            set.compact();
            // Unchanged facts: readers need no notification.
            self.state.send_if_modified(|s| {
                if s.version == current.version {
                    *s = Arc::new(RevocationState { version: s.version, set, live: s.live, synced: s.synced });
                }
                false
            });
        }
    }

    /// Installs a whole set, as a resync from Redis does (public for benchmarks and tests that
    /// run without the subscriber).
    pub fn replace(&self, mut set: RevocationSet) {
        set.prune(unix_now());
        let size = set.len();
        self.state
            .send_modify(|s| *s = Arc::new(RevocationState { version: s.version + 1, set, live: true, synced: true }));
        self.metrics.revocation_resyncs.inc();
        self.metrics.revocation_subscription_live.set(1);
        info!(revocations = size, "revocations resynced from Redis");
        let _ = self.updates.send(Update::Full);
    }

    fn set_live(&self, live: bool) {
        self.metrics.revocation_subscription_live.set(i64::from(live));
        self.state.send_if_modified(|s| {
            if s.live == live {
                return false;
            }
            *s = Arc::new(RevocationState { version: s.version, set: s.set.clone(), live, synced: s.synced });
            true
        });
    }

    /// Follows the channel until the process ends. `seeds` are the Redis node URLs (one, or a
    /// cluster's seeds: pub/sub reaches every node of a cluster, so any one will do; a failed
    /// node makes the next attempt use the next seed).
    pub fn spawn_subscriber(self: &Arc<Self>, seeds: Vec<String>, cluster: bool, channel: String, key_prefix: String) {
        let hub = Arc::clone(self);
        tokio::spawn(async move {
            let writer = match RedisConn::open(&seeds.join(","), cluster, Duration::from_secs(2)) {
                Ok(w) => w,
                Err(e) => {
                    warn!(error = %e, "revocations: no Redis handle; not following");
                    return;
                }
            };
            let mut backoff = Duration::from_millis(100);
            for seed in seeds.iter().cycle() {
                match hub.follow(seed, cluster, &writer, &channel, &key_prefix).await {
                    Ok(()) => warn!("revocation subscription ended; reconnecting"),
                    Err(e) => warn!(error = %e, retry_in = ?backoff, "revocation subscription failed"),
                }
                hub.set_live(false);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        });
    }

    async fn follow(
        &self,
        seed: &str,
        cluster: bool,
        writer: &RedisConn,
        channel: &str,
        key_prefix: &str,
    ) -> redis::RedisResult<()> {
        let client = &redis::Client::open(seed)?;
        let mut pubsub = client.get_async_pubsub().await?;
        pubsub.subscribe(channel).await?;
        // Subscribed first, then the stored state: a fact published in between is seen twice
        // (harmless), never missed.
        let mut stored = if cluster {
            // Stored facts are spread over the cluster's slots: read every master.
            let mut set = RevocationSet::new();
            for node in crate::backend::redis_conn::cluster_masters(seed).await? {
                load_stored(&node, key_prefix, &mut set).await?;
            }
            set
        } else {
            let mut set = RevocationSet::new();
            load_stored(client, key_prefix, &mut set).await?;
            set
        };
        // Facts this process already holds stay: a revocation is never withdrawn (it expires),
        // so a Redis that lost data (restarted without persistence) must not make a revoked
        // credential valid again. What Redis lost is written back, so a sidecar that starts
        // later (with an empty memory) still finds it.
        let in_store: std::collections::HashSet<String> =
            stored.to_vec().iter().map(Revocation::storage_suffix).collect();
        let now = unix_now();
        let lost: Vec<Revocation> = self
            .current()
            .set
            .to_vec()
            .into_iter()
            .filter(|r| r.expires_at() > now && !in_store.contains(&r.storage_suffix()))
            .collect();
        for r in &lost {
            stored.insert(r);
        }
        if !lost.is_empty() {
            // Through the connection that just read the stored state (a lazy writer may still
            // hold the connection of the Redis that restarted); in a cluster the writer routes
            // each key to its slot. A failure ends this subscription, so the next one retries:
            // a fact left unwritten would be lost to a sidecar that starts later.
            if cluster {
                restore(&mut writer.clone(), key_prefix, &lost, now).await?;
            } else {
                restore(&mut client.get_multiplexed_async_connection().await?, key_prefix, &lost, now).await?;
            }
        }
        self.replace(stored);
        let mut messages = pubsub.into_on_message();
        while let Some(msg) = messages.next().await {
            let received = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
            self.metrics.revocation_last_received.set(received.as_secs_f64());
            let payload: String = match msg.get_payload() {
                Ok(p) => p,
                Err(e) => {
                    warn!(error = %e, "revocation message is not text; ignored");
                    continue;
                }
            };
            match serde_json::from_str::<Revocation>(&payload) {
                Ok(r) => self.apply(r, u64::try_from(received.as_micros()).unwrap_or(u64::MAX)),
                Err(e) => {
                    self.metrics.revocation_errors.inc();
                    warn!(error = %e, "revocation message refused");
                }
            }
        }
        Ok(())
    }
}

/// Writes facts Redis lost back (`SET ... EX ... NX`: a fact stored meanwhile wins), so the
/// stored state stays the truth for sidecars that start later. An error is returned (and the
/// caller retries): the facts are still held in memory here and in every filter meanwhile.
async fn restore(
    conn: &mut impl redis::aio::ConnectionLike,
    prefix: &str,
    facts: &[Revocation],
    now: u64,
) -> redis::RedisResult<()> {
    for r in facts {
        let Ok(json) = serde_json::to_string(r) else { continue };
        let ttl = r.expires_at().saturating_sub(now).max(1);
        let key = format!("{prefix}{}", r.storage_suffix());
        if let Err(e) = redis::cmd("SET").arg(&key).arg(json).arg("EX").arg(ttl).arg("NX").query_async::<()>(conn).await
        {
            warn!(error = %e, "could not write a lost revocation back to Redis; retrying with the next subscription");
            return Err(e);
        }
    }
    warn!(lost = facts.len(), "Redis had lost revocations this sidecar holds; written back");
    Ok(())
}

/// Adds every revocation stored on one node under `prefix` (SCAN, then pipelined GETs: in a
/// cluster a multi-key MGET would span slots).
async fn load_stored(client: &redis::Client, prefix: &str, set: &mut RevocationSet) -> redis::RedisResult<()> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let mut keys: Vec<String> = Vec::new();
    {
        let mut iter = conn.scan_match::<_, String>(format!("{prefix}*")).await?;
        while let Some(k) = iter.next_item().await {
            keys.push(k?);
        }
    }
    for chunk in keys.chunks(500) {
        let mut pipe = redis::pipe();
        for key in chunk {
            pipe.get(key);
        }
        let values: Vec<Option<String>> = pipe.query_async(&mut conn).await?;
        for v in values.into_iter().flatten() {
            if let Ok(r) = serde_json::from_str::<Revocation>(&v) {
                set.insert(&r);
            }
        }
    }
    Ok(())
}
