//! The root context of a filter VM: configuration, and the control stream that brings keys.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authz_core::KeySet;
use authz_core::revocation::Revocation;
use authz_core::routes::{PolicyDocument, RouteTable};
use authz_proto::authz::v1::{ControlEvent, SubscribeRequest, control_event};
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::Settings;
use crate::http::Http;
use crate::metrics::Metrics;
use crate::worker::{Shared, Worker};

const CONTROL_SERVICE: &str = "authz.v1.Control";
const CONTROL_METHOD: &str = "Subscribe";
const MAX_BACKOFF: Duration = Duration::from_secs(30);
const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Root {
    shared: Option<Shared>,
    stream: Option<u32>,
    backoff: Duration,
    next_attempt: Option<SystemTime>,
    key_version: u64,
    /// When the control stream was last lost (or the VM started without one).
    down_since: Option<SystemTime>,
    /// When the open stream last delivered an event (or was opened): silence past
    /// `controlIdleTimeout` means it is dead without having closed.
    last_event: Option<SystemTime>,
}

impl Root {
    fn open_stream(&mut self) {
        let Some(shared) = &self.shared else { return };
        let settings = Rc::clone(&shared.borrow().settings);
        let metadata = settings.sidecar_metadata.pairs();
        let opened = self.open_grpc_stream(&settings.sidecar_cluster, CONTROL_SERVICE, CONTROL_METHOD, metadata);
        match opened {
            Ok(token) => {
                let req = SubscribeRequest { node: "envoy-filter".into() }.encode_to_vec();
                // Server streaming: one request, then half-close.
                self.send_grpc_stream_message(token, Some(&req), true);
                self.stream = Some(token);
                self.next_attempt = None;
                self.last_event = Some(self.get_current_time());
            }
            Err(status) => {
                log::warn(&format!("control stream to {} could not be opened: {status:?}", settings.sidecar_cluster));
                self.schedule_reconnect();
            }
        }
    }

    /// The stream is gone (closed, or silent too long); `since` is when it last worked. The
    /// staleness clock starts at the first loss only: each failed reconnect loses a stream too,
    /// and restarting the clock there would keep a set "fresh" while reconnects keep failing.
    fn stream_lost(&mut self, since: SystemTime) {
        self.stream = None;
        self.last_event = None;
        if self.down_since.is_none() {
            self.down_since = Some(since);
        }
        if let Some(shared) = &self.shared {
            let mut w = shared.borrow_mut();
            // With no tolerance configured, distrust the set at once (fail closed).
            if w.settings.revocation_stale_after.is_zero() {
                w.revocations_fresh = false;
            }
        }
        self.schedule_reconnect();
    }

    /// The first attempt after a healthy stream is made at the next tick (a reset connection
    /// or a restarted sidecar is back at once, and revocations published meanwhile come with
    /// the snapshot); attempts that keep failing back off from `reconnectInterval` to 30 s.
    fn schedule_reconnect(&mut self) {
        let Some(shared) = &self.shared else { return };
        let base = shared.borrow().settings.reconnect_interval;
        self.next_attempt = Some(self.get_current_time() + self.backoff);
        self.backoff = if self.backoff.is_zero() { base } else { (self.backoff * 2).min(MAX_BACKOFF) };
    }

    fn apply(&mut self, event: ControlEvent) {
        let Some(shared) = &self.shared else { return };
        match event.event {
            Some(control_event::Event::Keys(snapshot)) => {
                if snapshot.version != 0 && snapshot.version == self.key_version {
                    return;
                }
                let mut keys = KeySet::new();
                match keys.extend_from_jwks_json(&snapshot.jwks_json) {
                    Ok(()) => {
                        let mut w = shared.borrow_mut();
                        w.auth.set_keys(keys);
                        w.metrics.key_updates.inc();
                        self.key_version = snapshot.version;
                    }
                    // Keep the last good keys: a bad snapshot must not lock everyone out.
                    Err(e) => log::warn(&format!("control stream: key snapshot refused: {e}")),
                }
            }
            Some(control_event::Event::Revocations(update)) => {
                let mut w = shared.borrow_mut();
                // A full snapshot adds to what this VM knows rather than replacing it: a
                // revocation is never withdrawn, only expires (pruned below), so a sidecar or a
                // Redis that lost facts cannot make a revoked token valid again here.
                for json in &update.revocations_json {
                    match serde_json::from_str::<Revocation>(json) {
                        Ok(r) => w.revocations.insert(&r),
                        Err(e) => log::warn(&format!("control stream: revocation refused: {e}")),
                    }
                }
                if update.full {
                    // Only a full snapshot after a (re)connect makes the set trustworthy again.
                    if let Ok(now) = self.get_current_time().duration_since(UNIX_EPOCH) {
                        w.revocations.prune(now.as_secs());
                    }
                    w.revocations_fresh = true;
                    self.down_since = None;
                }
                w.metrics.revocation_updates.inc();
            }
            Some(control_event::Event::Policy(snapshot)) => {
                let mut w = shared.borrow_mut();
                if w.policy.is_some() && w.policy_version == snapshot.version {
                    return;
                }
                let parsed = serde_json::from_str::<PolicyDocument>(&snapshot.policy_json)
                    .map_err(|e| e.to_string())
                    .and_then(|doc| {
                        RouteTable::from_document(
                            w.settings.public_paths.clone(),
                            w.settings.public_prefixes.clone(),
                            doc,
                        )
                        .map_err(|e| e.to_string())
                    });
                match parsed {
                    Ok(table) => {
                        w.policy = Some(Rc::new(table));
                        w.policy_version = snapshot.version;
                        w.metrics.policy_updates.inc();
                    }
                    // The sidecar validated it; a refusal here means a version skew: keep the
                    // last good policy (or none, which sends requests to the sidecar).
                    Err(e) => log::warn(&format!("control stream: policy {} refused: {e}", snapshot.version)),
                }
            }
            // Only shows the stream alive (`last_event`, set on receipt).
            Some(control_event::Event::Heartbeat(_)) => {}
            None => log::warn("control stream: event of an unknown kind ignored"),
        }
    }
}

impl Root {
    /// A stream with no event (not even a heartbeat) for `controlIdleTimeout` is dead: a hung
    /// sidecar or a half-open connection never closes it. Cancel it and reconnect; the set's
    /// staleness counts from the last event, when this VM last knew it was current.
    fn drop_silent_stream(&mut self, now: SystemTime) {
        let (Some(token), Some(last), Some(shared)) = (self.stream, self.last_event, &self.shared) else { return };
        let idle = shared.borrow().settings.control_idle_timeout;
        if !now.duration_since(last).is_ok_and(|d| d >= idle) {
            return;
        }
        shared.borrow().metrics.control_stream_idle.inc();
        log::warn(&format!("control stream silent for {idle:?}: dropping it and reconnecting"));
        // Through the hostcall, not the SDK's wrapper (which unwraps): a stream the host has
        // already forgotten is not an error worth a VM.
        let _ = proxy_wasm::hostcalls::cancel_grpc_stream(token);
        self.stream_lost(last);
    }
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        if self.stream != Some(token_id) {
            return;
        }
        self.last_event = Some(self.get_current_time());
        // A stream that delivers is healthy: the next loss starts the backoff afresh. (Reset
        // here, not on a new key snapshot: a reconnect to the same keys sends an unchanged
        // snapshot, and the backoff grown in an outage then delayed every later reconnect.)
        self.backoff = Duration::ZERO;
        let Some(bytes) = self.get_grpc_stream_message(0, message_size) else { return };
        match ControlEvent::decode(bytes.as_slice()) {
            Ok(event) => self.apply(event),
            Err(e) => log::warn(&format!("control stream: undecodable event: {e}")),
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        if self.stream != Some(token_id) {
            return;
        }
        if let Some(shared) = &self.shared {
            shared.borrow().metrics.control_stream_closed.inc();
        }
        log::info(&format!("control stream closed (grpc status {status_code}); reconnecting"));
        // The set was last known current at the last event (a heartbeat at most
        // `controlHeartbeatInterval` before), not when Envoy noticed the loss (a keepalive
        // timeout can take seconds).
        let since = self.last_event.unwrap_or_else(|| self.get_current_time());
        self.stream_lost(since);
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log::error(&e.to_string());
                return false;
            }
        };
        let control = settings.control_stream;
        self.shared = Some(Rc::new(RefCell::new(Worker::new(settings, Metrics::define()))));
        if control {
            self.set_tick_period(TICK);
            self.open_stream();
        }
        true
    }

    fn on_tick(&mut self) {
        let now = self.get_current_time();
        self.drop_silent_stream(now);
        if let (Some(since), Some(shared)) = (self.down_since, &self.shared) {
            let mut w = shared.borrow_mut();
            if w.revocations_fresh && now.duration_since(since).is_ok_and(|d| d >= w.settings.revocation_stale_after) {
                w.revocations_fresh = false;
                log::warn("control stream down past revocationStaleAfter: revocation set is stale");
            }
        }
        if self.stream.is_none() && self.next_attempt.is_some_and(|t| now >= t) {
            self.open_stream();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Logging through the host, ignoring a failed log call (nothing useful can be done with it).
pub mod log {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    pub fn error(msg: &str) {
        let _ = hostcalls::log(LogLevel::Error, msg);
    }
    pub fn warn(msg: &str) {
        let _ = hostcalls::log(LogLevel::Warn, msg);
    }
    pub fn info(msg: &str) {
        let _ = hostcalls::log(LogLevel::Info, msg);
    }
}
