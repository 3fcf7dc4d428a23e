//! The control stream's state and events, with no host: what the root context does with a
//! stream that opens, delivers, closes or falls silent, and with each event (keys,
//! revocations, the policy and the shared settings). The root context only turns the
//! answers into hostcalls, so all of it is unit-tested here and fuzzed directly
//! (`fuzz/fuzz_targets/control.rs`).

use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authz_core::KeySet;
use authz_core::keys::Source;
use authz_core::revocation::Revocation;
use authz_core::routes::{PolicyDocument, RouteTable};
use authz_core::settings::SharedSettings;
use authz_proto::authz::v1::{ControlEvent, KeySnapshot, control_event};

use crate::worker::{Pushed, Worker};

/// The longest wait between reconnect attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The stream as the root context keeps it.
#[derive(Debug, Default)]
pub struct ControlState {
    /// The open stream's token.
    pub stream: Option<u32>,
    backoff: Duration,
    next_attempt: Option<SystemTime>,
    /// The last key snapshot version applied, per provider (`""`: the default one).
    key_versions: std::collections::HashMap<String, u64>,
    /// When the control stream was last lost (or the VM started without one).
    down_since: Option<SystemTime>,
    /// When the open stream last delivered an event (or was opened): silence past
    /// `controlIdleTimeout` means it is dead without having closed.
    last_event: Option<SystemTime>,
    /// The settings applied with the last policy, as received.
    settings_json: String,
}

/// What the root context must do after a tick.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tick {
    /// Cancel this silent stream.
    pub cancel: Option<u32>,
    /// Open a stream now.
    pub open: bool,
    pub warnings: Vec<String>,
}

impl ControlState {
    pub fn opened(&mut self, token: u32, now: SystemTime) {
        self.stream = Some(token);
        self.next_attempt = None;
        self.last_event = Some(now);
    }

    /// Opening failed: try again later.
    pub fn open_failed(&mut self, now: SystemTime, w: &Worker) {
        self.schedule_reconnect(now, w.settings.reconnect_interval);
    }

    /// The first attempt after a healthy stream is made at the next tick (a reset connection
    /// or a restarted sidecar is back at once, and revocations published meanwhile come with
    /// the snapshot); attempts that keep failing back off from `reconnectInterval` to 30 s.
    fn schedule_reconnect(&mut self, now: SystemTime, base: Duration) {
        self.next_attempt = Some(now + self.backoff);
        self.backoff = if self.backoff.is_zero() { base } else { (self.backoff * 2).min(MAX_BACKOFF) };
    }

    /// A message arrived on `token`: true when it is this stream's. A stream that delivers is
    /// healthy: the next loss starts the backoff afresh. (Reset here, not on a new key
    /// snapshot: a reconnect to the same keys sends an unchanged snapshot, and the backoff
    /// grown in an outage then delayed every later reconnect.)
    pub fn on_message(&mut self, token: u32, now: SystemTime) -> bool {
        if self.stream != Some(token) {
            return false;
        }
        self.last_event = Some(now);
        self.backoff = Duration::ZERO;
        true
    }

    /// `token` closed: true when it was this stream. The set was last known current at the
    /// last event (a heartbeat at most `controlHeartbeatInterval` before), not when Envoy
    /// noticed the loss (a keepalive timeout can take seconds).
    pub fn on_close(&mut self, token: u32, now: SystemTime, w: &mut Worker) -> bool {
        if self.stream != Some(token) {
            return false;
        }
        w.metrics.control_stream_closed.inc();
        let since = self.last_event.unwrap_or(now);
        self.lost(since, now, w);
        true
    }

    /// The stream is gone (closed, or silent too long); `since` is when it last worked. The
    /// staleness clock starts at the first loss only: each failed reconnect loses a stream too,
    /// and restarting the clock there would keep a set "fresh" while reconnects keep failing.
    fn lost(&mut self, since: SystemTime, now: SystemTime, w: &mut Worker) {
        self.stream = None;
        self.last_event = None;
        if self.down_since.is_none() {
            self.down_since = Some(since);
        }
        // With no tolerance configured, distrust the set at once (fail closed).
        if w.settings.revocation_stale_after.is_zero() {
            w.revocations_fresh = false;
        }
        self.schedule_reconnect(now, w.settings.reconnect_interval);
    }

    /// The periodic check: a stream silent for `controlIdleTimeout` is dead (a hung sidecar
    /// or a half-open connection never closes it), a set unconfirmed for
    /// `revocationStaleAfter` is stale, and a due reconnect is made.
    pub fn tick(&mut self, now: SystemTime, w: &mut Worker) -> Tick {
        let mut out = Tick::default();
        if let (Some(token), Some(last)) = (self.stream, self.last_event) {
            let idle = w.settings.control_idle_timeout;
            if now.duration_since(last).is_ok_and(|d| d >= idle) {
                w.metrics.control_stream_idle.inc();
                out.warnings.push(format!("control stream silent for {idle:?}: dropping it and reconnecting"));
                out.cancel = Some(token);
                self.lost(last, now, w);
            }
        }
        if let Some(since) = self.down_since
            && w.revocations_fresh
            && now.duration_since(since).is_ok_and(|d| d >= w.settings.revocation_stale_after)
        {
            w.revocations_fresh = false;
            out.warnings.push("control stream down past revocationStaleAfter: revocation set is stale".into());
        }
        out.open = self.stream.is_none() && self.next_attempt.is_some_and(|t| now >= t);
        out
    }

    /// Applies one event to the worker; returns what was refused (logged by the caller).
    pub fn apply(&mut self, w: &mut Worker, event: ControlEvent, now: SystemTime) -> Vec<String> {
        let mut warnings = Vec::new();
        match event.event {
            Some(control_event::Event::Keys(snapshot)) => self.apply_keys(w, "", snapshot, &mut warnings),
            Some(control_event::Event::ProviderKeys(snapshot)) => {
                let provider = snapshot.provider.clone();
                if provider.is_empty() {
                    warnings.push("control stream: provider key snapshot without a provider ignored".into());
                } else {
                    self.apply_keys(w, &provider, snapshot, &mut warnings);
                }
            }
            Some(control_event::Event::Revocations(update)) => {
                // A full snapshot adds to what this VM knows rather than replacing it: a
                // revocation is never withdrawn, only expires (pruned below), so a sidecar or a
                // Redis that lost facts cannot make a revoked token valid again here.
                for json in &update.revocations_json {
                    match serde_json::from_str::<Revocation>(json) {
                        Ok(r) => w.revocations.insert(&r),
                        Err(e) => warnings.push(format!("control stream: revocation refused: {e}")),
                    }
                }
                if update.full {
                    // Only a full snapshot after a (re)connect makes the set trustworthy again.
                    if let Ok(t) = now.duration_since(UNIX_EPOCH) {
                        w.revocations.prune(t.as_secs());
                    }
                    w.revocations_fresh = true;
                    self.down_since = None;
                } else if update.received_unix_micros > 0
                    && let Ok(applied) = now.duration_since(UNIX_EPOCH)
                {
                    let applied = u64::try_from(applied.as_micros()).unwrap_or(u64::MAX);
                    w.metrics.revocation_last_applied.record(applied);
                    w.metrics.revocation_delay.record(applied.saturating_sub(update.received_unix_micros));
                }
                w.metrics.revocation_updates.inc();
            }
            Some(control_event::Event::Policy(snapshot)) => {
                if w.policy.is_some()
                    && w.policy_version == snapshot.version
                    && self.settings_json == snapshot.settings_json
                {
                    return warnings;
                }
                match policy_with_settings(&snapshot.policy_json, &snapshot.settings_json) {
                    Ok((table, settings)) => {
                        let pushed = Pushed::new(settings);
                        w.auth.set_providers(pushed.providers.clone());
                        // Cached identities keep the claims these rules and the audit's tenant
                        // read, not every claim a token carries.
                        let mut kept = table.claims_read();
                        kept.push(authz_core::identity::claim_root(&pushed.settings.tenant_claim).into_owned());
                        kept.sort_unstable();
                        kept.dedup();
                        w.auth.keep_only_claims(Some(kept));
                        w.pushed = Rc::new(pushed);
                        w.policy = Some(Rc::new(table));
                        w.policy_version = snapshot.version;
                        self.settings_json = snapshot.settings_json;
                        w.metrics.policy_updates.inc();
                    }
                    // The sidecar validated both; a refusal here means a version skew: keep the
                    // last good policy (or none, which sends requests to the sidecar).
                    Err(e) => warnings.push(format!("control stream: policy {} refused: {e}", snapshot.version)),
                }
            }
            // Only shows the stream alive (`on_message`).
            Some(control_event::Event::Heartbeat(_)) => {}
            None => warnings.push("control stream: event of an unknown kind ignored".into()),
        }
        warnings
    }
}

impl ControlState {
    /// One provider's key snapshot (`""`: the default provider's).
    fn apply_keys(&mut self, w: &mut Worker, provider: &str, snapshot: KeySnapshot, warnings: &mut Vec<String>) {
        let version = self.key_versions.entry(provider.to_string()).or_default();
        if snapshot.version != 0 && snapshot.version == *version {
            return;
        }
        let mut keys = KeySet::new();
        // The sidecar's push is a local source (it carries the HMAC secret) and holds only
        // keys the sidecar took; any it could not use here is named.
        match keys.extend_from_jwks_json(&snapshot.jwks_json, Source::Local) {
            Ok(loaded) => {
                warnings.extend(loaded.skipped.iter().map(|s| format!("control stream: {s} skipped")));
                w.auth.set_provider_keys(provider, keys);
                w.metrics.key_updates.inc();
                *version = snapshot.version;
            }
            // Keep the last good keys: a bad snapshot must not lock everyone out.
            Err(e) => warnings.push(format!("control stream: key snapshot refused: {e}")),
        }
    }
}

/// The route table and the shared settings of a policy snapshot. A snapshot without settings
/// comes from a sidecar older than this filter: refused, so that nothing is decided here with
/// defaults the sidecar does not share (every request then goes to the sidecar).
fn policy_with_settings(policy_json: &str, settings_json: &str) -> Result<(RouteTable, SharedSettings), String> {
    if settings_json.is_empty() {
        return Err("it carries no settings (the sidecar is older than this filter)".into());
    }
    let settings: SharedSettings = serde_json::from_str(settings_json).map_err(|e| format!("settings: {e}"))?;
    if let Some(p) = settings.public_paths.iter().find(|p| !p.starts_with('/')) {
        return Err(format!("settings: public path {p:?} must start with '/'"));
    }
    settings.api_key_format.validate().map_err(|e| format!("settings: apiKeyFormat: {e}"))?;
    let sources = settings.token_sources.iter().chain(settings.providers.iter().flat_map(|p| &p.token_sources));
    for s in sources {
        s.validate().map_err(|e| format!("settings: tokenSources: {e}"))?;
    }
    let mapped = settings.claim_to_headers.iter().chain(settings.providers.iter().flat_map(|p| &p.claim_to_headers));
    for m in mapped {
        m.validate().map_err(|e| format!("settings: claimToHeaders: {e}"))?;
    }
    let doc = serde_json::from_str::<PolicyDocument>(policy_json).map_err(|e| e.to_string())?;
    let table = RouteTable::from_document(settings.public_paths.clone(), Vec::new(), doc).map_err(|e| e.to_string())?;
    Ok((table, settings))
}

#[cfg(test)]
mod tests;
