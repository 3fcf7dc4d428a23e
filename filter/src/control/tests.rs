//! The control stream without Envoy: reconnect backoff, silent streams, staleness, and what
//! each event does to the worker.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use authz_proto::authz::v1::{ControlEvent, KeySnapshot, PolicySnapshot, RevocationUpdate, control_event};

use super::*;
use crate::config::Settings;
use crate::metrics::Metrics;

fn worker(extra: &str) -> Worker {
    let json = format!(r#"{{"sidecarCluster": "c", "reconnectInterval": "500ms"{extra}}}"#);
    Worker::new(Settings::from_json(json.as_bytes()).unwrap(), Metrics::default())
}

fn at(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000) + Duration::from_millis(ms)
}

fn policy(version: &str, settings: &str) -> ControlEvent {
    ControlEvent {
        event: Some(control_event::Event::Policy(PolicySnapshot {
            version: version.into(),
            policy_json: r#"{"routes": [{"id": "tools", "prefix": "/api/tools"}]}"#.into(),
            settings_json: settings.into(),
        })),
    }
}

fn full_revocations(json: &[&str]) -> ControlEvent {
    ControlEvent {
        event: Some(control_event::Event::Revocations(RevocationUpdate {
            version: 1,
            full: true,
            revocations_json: json.iter().map(|s| s.to_string()).collect(),
            received_unix_micros: 0,
        })),
    }
}

#[test]
fn reconnects_back_off_and_a_delivering_stream_resets_them() {
    let mut w = worker("");
    let mut c = ControlState::default();
    // Failed attempts: the next at once, then 0.5 s, 1 s, 2 s ... up to 30 s.
    let mut waits = Vec::new();
    let mut now = at(0);
    for _ in 0..9 {
        c.open_failed(now, &w);
        let mut t = now;
        while !c.tick(t, &mut w).open {
            t += Duration::from_millis(100);
        }
        waits.push(t.duration_since(now).unwrap().as_millis());
        now = t;
    }
    assert_eq!(waits, [0, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    c.opened(7, now);
    assert!(c.on_message(7, now));
    assert!(!c.on_message(8, now), "another stream's message is not ours");
    assert!(c.on_close(7, now, &mut w));
    assert!(c.tick(now, &mut w).open, "after a healthy stream the first reconnect is immediate");
}

#[test]
fn a_silent_stream_is_dropped_and_the_set_goes_stale_from_its_last_event() {
    let mut w = worker(r#", "controlIdleTimeout": "2s", "revocationStaleAfter": "3s""#);
    let mut c = ControlState::default();
    c.opened(1, at(0));
    assert!(c.apply(&mut w, full_revocations(&[]), at(0)).is_empty());
    assert!(w.revocations_fresh);
    assert_eq!(c.tick(at(1900), &mut w), Tick::default());
    let t = c.tick(at(2000), &mut w);
    assert_eq!((t.cancel, t.open), (Some(1), true), "silent for 2 s: cancelled, reconnect at once");
    assert_eq!(c.stream, None);
    assert!(w.revocations_fresh, "still inside revocationStaleAfter of the last event");
    let t = c.tick(at(3000), &mut w);
    assert!(!w.revocations_fresh && t.warnings.iter().any(|m| m.contains("stale")));
    // A full snapshot on a new stream makes it current again.
    c.opened(2, at(3100));
    c.apply(&mut w, full_revocations(&[]), at(3100));
    assert!(w.revocations_fresh);
}

#[test]
fn with_no_staleness_allowed_a_lost_stream_distrusts_the_set_at_once() {
    let mut w = worker(r#", "revocationStaleAfter": "0s""#);
    let mut c = ControlState::default();
    c.opened(1, at(0));
    c.apply(&mut w, full_revocations(&[]), at(0));
    assert!(c.on_close(1, at(10), &mut w));
    assert!(!w.revocations_fresh);
}

#[test]
fn revocations_accumulate_and_expired_ones_are_pruned() {
    let mut w = worker("");
    let mut c = ControlState::default();
    let now_secs = 1_800_000_000u64;
    let live = format!(r#"{{"kind": "session", "sid": "s1", "expires_at": {}}}"#, now_secs + 60);
    let gone = format!(r#"{{"kind": "session", "sid": "s2", "expires_at": {}}}"#, now_secs - 60);
    let warnings = c.apply(&mut w, full_revocations(&[&live, &gone, "not json"]), at(0));
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(w.revocations.len(), 1);
}

#[test]
fn a_policy_brings_its_settings_and_one_without_them_is_refused() {
    let mut w = worker("");
    let mut c = ControlState::default();
    // From a sidecar older than the filter: no settings, nothing decided here.
    let warnings = c.apply(&mut w, policy("v1", ""), at(0));
    assert!(w.policy.is_none() && warnings[0].contains("no settings"), "{warnings:?}");
    let bad = c.apply(&mut w, policy("v1", r#"{"issuers": []}"#), at(0));
    assert!(w.policy.is_none() && bad[0].contains("settings"), "{bad:?}");
    let mut s = authz_core::settings::SharedSettings {
        issuers: vec!["https://auth".into()],
        public_paths: vec!["/health".into()],
        tenant_claim: "lab".into(),
        ..Default::default()
    };
    let json = serde_json::to_string(&s).unwrap();
    assert!(c.apply(&mut w, policy("v1", &json), at(0)).is_empty());
    assert_eq!(w.policy_version, "v1");
    assert_eq!(w.pushed.providers.default_provider().scope.issuers, ["https://auth"]);
    assert_eq!(w.pushed.settings.tenant_claim, "lab");
    assert_eq!(w.auth.kept_claims(), Some(&["lab".to_string()][..]), "cached identities keep the tenant claim");
    let table = w.policy.clone().unwrap();
    assert!(matches!(table.find("GET", "/health"), authz_core::routes::Matched::Public));
    // The same policy with other settings (a sidecar restarted with a new configuration).
    s.tenant_claim = "tenant".into();
    c.apply(&mut w, policy("v1", &serde_json::to_string(&s).unwrap()), at(0));
    assert_eq!(w.pushed.settings.tenant_claim, "tenant");
    // Rules that read claims: those are kept too.
    let reading = ControlEvent {
        event: Some(control_event::Event::Policy(PolicySnapshot {
            version: "v1b".into(),
            policy_json: r#"{"routes": [{"id": "t", "template": "/l/{lab}", "bind": {"lab": "labs"},
                "claims": [{"claim": "/org/tier", "equals": "gold"}]}]}"#
                .into(),
            settings_json: serde_json::to_string(&s).unwrap(),
        })),
    };
    assert!(c.apply(&mut w, reading, at(0)).is_empty());
    let kept: Vec<&str> = w.auth.kept_claims().unwrap_or_default().iter().map(String::as_str).collect();
    assert_eq!(kept, ["labs", "org", "tenant"]);
    // A refused update keeps the last good one.
    let relative = serde_json::to_string(&authz_core::settings::SharedSettings {
        public_paths: vec!["health".into()],
        ..Default::default()
    })
    .unwrap();
    assert!(!c.apply(&mut w, policy("v2", &relative), at(0)).is_empty());
    assert_eq!(w.policy_version, "v1b");
}

#[test]
fn a_bad_key_snapshot_keeps_the_last_good_keys() {
    let mut w = worker("");
    let mut c = ControlState::default();
    let keys = |version: u64, jwks: &str| ControlEvent {
        event: Some(control_event::Event::Keys(KeySnapshot {
            version,
            jwks_json: jwks.into(),
            provider: String::new(),
        })),
    };
    let oct = r#"{"keys": [{"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "alg": "HS256"}]}"#;
    assert!(c.apply(&mut w, keys(1, oct), at(0)).is_empty());
    assert_eq!(w.auth.keys().len(), 1);
    assert!(!c.apply(&mut w, keys(2, "{not json"), at(0)).is_empty());
    assert_eq!(w.auth.keys().len(), 1);
    assert!(!c.apply(&mut w, ControlEvent { event: None }, at(0)).is_empty());
}
