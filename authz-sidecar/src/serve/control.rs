//! `authz.v1.Control/Subscribe`: pushes keys, the route policy and revocations to each filter
//! VM, first the current state, then every change, and a heartbeat whenever the stream has
//! been idle for `controlHeartbeatInterval` (how a filter tells a hung stream from a quiet one).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use authz_proto::authz::v1::control_server::Control;
use authz_proto::authz::v1::{
    ControlEvent, Heartbeat, KeySnapshot, PolicySnapshot, RevocationUpdate, SubscribeRequest, control_event,
};
use futures::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};
use tracing::info;

use authz_core::settings::SharedSettings;

use crate::credentials::keystore::{KeyState, KeyStore};
use crate::credentials::revocations::{RevocationHub, Update};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyStore};

pub struct ControlService {
    keys: Arc<KeyStore>,
    revocations: Arc<RevocationHub>,
    policy: Arc<PolicyStore>,
    metrics: Arc<Metrics>,
    heartbeat: Duration,
    /// Whether this listener's callers are authenticated (`listen.rs`): only they receive
    /// symmetric keys.
    symmetric: bool,
    /// The settings every decider shares (`authz_core::settings`), sent with each policy.
    settings_json: Arc<str>,
}

impl ControlService {
    pub fn new(
        keys: Arc<KeyStore>,
        revocations: Arc<RevocationHub>,
        policy: Arc<PolicyStore>,
        metrics: Arc<Metrics>,
        heartbeat: Duration,
        symmetric: bool,
        settings: &SharedSettings,
    ) -> Self {
        // Serialising plain strings, numbers and options cannot fail.
        let settings_json = serde_json::to_string(settings).unwrap_or_default().into();
        Self { keys, revocations, policy, metrics, heartbeat, symmetric, settings_json }
    }
}

fn policy_event(p: &Policy, settings_json: &str) -> ControlEvent {
    ControlEvent {
        event: Some(control_event::Event::Policy(PolicySnapshot {
            version: p.version.clone(),
            policy_json: p.json.clone(),
            settings_json: settings_json.to_string(),
        })),
    }
}

/// Counts a subscriber for as long as its stream lives.
struct Subscriber(Arc<Metrics>);

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.0.control_subscribers.dec();
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<ControlEvent, Status>> + Send>>;

/// The key snapshot for a subscriber: with the HMAC secret only when `symmetric`.
fn keys_event(state: &KeyState, symmetric: bool) -> Option<ControlEvent> {
    let jwks = if symmetric { &state.jwks_json } else { &state.public_jwks_json };
    (!jwks.is_empty()).then(|| ControlEvent {
        event: Some(control_event::Event::Keys(KeySnapshot { version: state.version, jwks_json: jwks.clone() })),
    })
}

fn revocations_event(version: u64, full: bool, revocations_json: Vec<String>) -> ControlEvent {
    ControlEvent {
        event: Some(control_event::Event::Revocations(RevocationUpdate { version, full, revocations_json })),
    }
}

/// The whole set, or `None` before the sidecar has loaded it once.
fn full_snapshot(hub: &RevocationHub) -> Option<ControlEvent> {
    let state = hub.current();
    if !state.synced {
        return None;
    }
    let json = state.set.to_vec().iter().filter_map(|r| serde_json::to_string(r).ok()).collect();
    Some(revocations_event(state.version, true, json))
}

#[tonic::async_trait]
impl Control for ControlService {
    type SubscribeStream = EventStream;

    async fn subscribe(&self, request: Request<SubscribeRequest>) -> Result<Response<EventStream>, Status> {
        let node = request.into_inner().node;
        info!(%node, "control stream opened");
        self.metrics.control_subscribers.inc();
        let guard = Subscriber(Arc::clone(&self.metrics));
        let (tx, rx) = mpsc::channel(64);
        // Subscribe to changes before reading the current state: nothing falls in between.
        let mut keys_rx = self.keys.subscribe();
        let mut policy_rx = self.policy.subscribe();
        let mut updates = self.revocations.subscribe();
        let hub = Arc::clone(&self.revocations);
        let period = self.heartbeat;
        let symmetric = self.symmetric;
        let settings = Arc::clone(&self.settings_json);
        tokio::spawn(async move {
            let _alive = guard;
            let first_keys = keys_event(&keys_rx.borrow_and_update(), symmetric);
            if let Some(ev) = first_keys
                && tx.send(Ok(ev)).await.is_err()
            {
                return;
            }
            let first_policy = policy_event(&policy_rx.borrow_and_update(), &settings);
            if tx.send(Ok(first_policy)).await.is_err() {
                return;
            }
            // Before the first resync there is nothing trustworthy to send: the filter stays
            // stale (asks per request) until the `Full` update that follows the resync.
            if let Some(ev) = full_snapshot(&hub)
                && tx.send(Ok(ev)).await.is_err()
            {
                return;
            }
            let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let event = tokio::select! {
                    _ = heartbeat.tick() => Some(ControlEvent { event: Some(control_event::Event::Heartbeat(Heartbeat {})) }),
                    changed = keys_rx.changed() => match changed {
                        Ok(()) => keys_event(&keys_rx.borrow_and_update(), symmetric),
                        Err(_) => break,
                    },
                    changed = policy_rx.changed() => match changed {
                        Ok(()) => Some(policy_event(&policy_rx.borrow_and_update(), &settings)),
                        Err(_) => break,
                    },
                    update = updates.recv() => match update {
                        Ok(Update::Delta(version, r)) => {
                            serde_json::to_string(&r).ok().map(|j| revocations_event(version, false, vec![j]))
                        }
                        // A resync, or we fell behind: the whole set again.
                        Ok(Update::Full) | Err(broadcast::error::RecvError::Lagged(_)) => full_snapshot(&hub),
                        Err(broadcast::error::RecvError::Closed) => break,
                    },
                    () = tx.closed() => break,
                };
                if let Some(ev) = event {
                    if tx.send(Ok(ev)).await.is_err() {
                        break;
                    }
                    // Any event shows the stream alive: the next heartbeat is due a period later.
                    heartbeat.reset();
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
