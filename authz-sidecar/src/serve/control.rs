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
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::{ReceiverStream, WatchStream};
use tonic::{Request, Response, Status};
use tracing::info;

use authz_core::settings::SharedSettings;

use crate::credentials::keystore::KeyState;
use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::{RevocationHub, Update};
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyStore};

pub struct ControlService {
    keys: KeyStores,
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
        keys: KeyStores,
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

/// One provider's key snapshot for a subscriber: with the HMAC secret only when `symmetric`.
/// The default provider's keys are a `keys` event, every other provider's a `provider_keys`
/// event naming it.
fn keys_event(provider: &str, state: &KeyState, symmetric: bool) -> Option<ControlEvent> {
    let jwks = if symmetric { &state.jwks_json } else { &state.public_jwks_json };
    if jwks.is_empty() {
        return None;
    }
    let default = provider == authz_core::provider::DEFAULT;
    let snapshot = KeySnapshot {
        version: state.version,
        jwks_json: jwks.clone(),
        provider: if default { String::new() } else { provider.to_string() },
    };
    let event =
        if default { control_event::Event::Keys(snapshot) } else { control_event::Event::ProviderKeys(snapshot) };
    Some(ControlEvent { event: Some(event) })
}

fn revocations_event(
    version: u64,
    full: bool,
    revocations_json: Vec<String>,
    received_unix_micros: u64,
) -> ControlEvent {
    ControlEvent {
        event: Some(control_event::Event::Revocations(RevocationUpdate {
            version,
            full,
            revocations_json,
            received_unix_micros,
        })),
    }
}

/// The whole set, or `None` before the sidecar has loaded it once.
fn full_snapshot(hub: &RevocationHub) -> Option<ControlEvent> {
    let state = hub.current();
    if !state.synced {
        return None;
    }
    let json = state.set.to_vec().iter().filter_map(|r| serde_json::to_string(r).ok()).collect();
    Some(revocations_event(state.version, true, json, 0))
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
        let firsts: Vec<_> = self.keys.iter().map(|s| (s.provider(), s.subscribe())).collect();
        let mut policy_rx = self.policy.subscribe();
        let mut updates = self.revocations.subscribe();
        let hub = Arc::clone(&self.revocations);
        let period = self.heartbeat;
        let symmetric = self.symmetric;
        let settings = Arc::clone(&self.settings_json);
        tokio::spawn(async move {
            let _alive = guard;
            let mut changes = Vec::new();
            for (provider, mut rx) in firsts {
                let first = keys_event(provider, &rx.borrow_and_update(), symmetric);
                if let Some(ev) = first
                    && tx.send(Ok(ev)).await.is_err()
                {
                    return;
                }
                changes.push(WatchStream::from_changes(rx).map(move |state| (provider, state)).boxed());
            }
            let mut key_changes = futures::stream::select_all(changes);
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
                    Some((provider, state)) = key_changes.next() => keys_event(provider, &state, symmetric),
                    changed = policy_rx.changed() => match changed {
                        Ok(()) => Some(policy_event(&policy_rx.borrow_and_update(), &settings)),
                        Err(_) => break,
                    },
                    update = updates.recv() => match update {
                        Ok(Update::Delta { version, revocation, received_unix_micros }) => serde_json::to_string(&revocation)
                            .ok()
                            .map(|j| revocations_event(version, false, vec![j], received_unix_micros)),
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
