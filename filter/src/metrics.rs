//! Filter counters, defined through proxy-wasm so they appear in Envoy's `/stats`
//! (Envoy shows them under the `wasmcustom.` prefix).
//!
//! An increment goes through a sink the root context installs ([`Metrics::define`]), so code
//! that counts (the request path, the control stream) names no hostcall itself and runs in
//! native unit tests, where counters are inert.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

thread_local! {
    /// Where increments go: nowhere until Envoy's counters are defined.
    static SINK: Cell<fn(u32)> = const { Cell::new(|_| {}) };
}

fn envoy_increment(id: u32) {
    let _ = hostcalls::increment_metric(id, 1);
}

/// One counter; a failed definition (never expected) leaves it inert rather than failing
/// requests over a statistic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<u32>);

impl Counter {
    fn define(name: &str) -> Self {
        Self(hostcalls::define_metric(MetricType::Counter, name).ok())
    }

    pub fn inc(self) {
        if let Some(id) = self.0 {
            SINK.with(|sink| sink.get()(id));
        }
    }
}

/// The filter's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Metrics {
    pub allowed: Counter,
    pub denied: Counter,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub callouts: Counter,
    pub callout_errors: Counter,
    pub key_updates: Counter,
    /// Requests refused because their credential was revoked.
    pub revoked: Counter,
    /// Bearer requests sent to the sidecar because the revocation set was stale.
    pub stale_callouts: Counter,
    /// Revocation updates applied (full snapshots and single facts).
    pub revocation_updates: Counter,
    /// Route policies applied.
    pub policy_updates: Counter,
    /// Signatures verified by Envoy's native crypto (RSA, ECDSA).
    pub native_verifications: Counter,
    pub control_stream_closed: Counter,
    /// Control streams dropped for silence past `controlIdleTimeout` (no close was seen).
    pub control_stream_idle: Counter,
}

impl Metrics {
    /// Defines the counters in Envoy and sends increments there.
    pub fn define() -> Self {
        SINK.with(|sink| sink.set(envoy_increment));
        Self {
            allowed: Counter::define("authz_filter.allowed"),
            denied: Counter::define("authz_filter.denied"),
            cache_hits: Counter::define("authz_filter.cache_hits"),
            cache_misses: Counter::define("authz_filter.cache_misses"),
            callouts: Counter::define("authz_filter.callouts"),
            callout_errors: Counter::define("authz_filter.callout_errors"),
            key_updates: Counter::define("authz_filter.key_updates"),
            native_verifications: Counter::define("authz_filter.native_verifications"),
            revoked: Counter::define("authz_filter.revoked"),
            stale_callouts: Counter::define("authz_filter.stale_callouts"),
            revocation_updates: Counter::define("authz_filter.revocation_updates"),
            policy_updates: Counter::define("authz_filter.policy_updates"),
            control_stream_closed: Counter::define("authz_filter.control_stream_closed"),
            control_stream_idle: Counter::define("authz_filter.control_stream_idle"),
        }
    }
}
