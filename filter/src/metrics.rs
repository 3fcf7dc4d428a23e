//! Filter counters, defined through proxy-wasm so they appear in Envoy's `/stats`
//! (Envoy shows them under the `wasmcustom.` prefix).
//!
//! An increment goes through a sink the root context installs ([`Metrics::define`]), so code
//! that counts (the request path, the control stream) names no hostcall itself and runs in
//! native unit tests, where counters are inert. The counters every request touches
//! (`allowed`, `denied`, `cache_hits`, `cache_misses`) are kept in the VM and added to Envoy's
//! on the root context's tick ([`flush`], every 200 ms): one hostcall per counter and tick
//! instead of two per request. The rest count rare events and go to Envoy at once, as do the
//! gauge and the histogram of revocation propagation.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::types::MetricType;

/// Counters kept in the VM between ticks.
const BATCHED: usize = 4;

thread_local! {
    /// Where increments go: nowhere until Envoy's counters are defined.
    static SINK: Cell<fn(u32, u64)> = const { Cell::new(|_, _| {}) };
    /// Where gauge values and histogram samples go, likewise.
    static RECORD: Cell<fn(u32, u64)> = const { Cell::new(|_, _| {}) };
    /// Increments of the batched counters since the last flush, by slot.
    static PENDING: [Cell<u64>; BATCHED] = const { [const { Cell::new(0) }; BATCHED] };
    /// The Envoy metric id of each batched slot.
    static BATCHED_IDS: [Cell<Option<u32>>; BATCHED] = const { [const { Cell::new(None) }; BATCHED] };
}

fn envoy_increment(id: u32, by: u64) {
    let _ = hostcalls::increment_metric(id, i64::try_from(by).unwrap_or(i64::MAX));
}

fn envoy_record(id: u32, value: u64) {
    let _ = hostcalls::record_metric(id, value);
}

/// Adds the batched counters' increments to Envoy's (the root context calls it on its tick).
pub fn flush() {
    for slot in 0..BATCHED {
        let n = PENDING.with(|p| p.get(slot).map_or(0, |c| c.replace(0)));
        if n > 0
            && let Some(id) = BATCHED_IDS.with(|ids| ids.get(slot).and_then(Cell::get))
        {
            SINK.with(|sink| sink.get()(id, n));
        }
    }
}

/// One counter; a failed definition (never expected) leaves it inert rather than failing
/// requests over a statistic.
#[derive(Debug, Clone, Copy, Default)]
pub struct Counter(Option<Kind>);

#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Sent to Envoy on every increment.
    Direct(u32),
    /// Kept in the VM until [`flush`]; the slot in `PENDING`.
    Batched(usize),
}

impl Counter {
    fn define(name: &str) -> Self {
        Self(hostcalls::define_metric(MetricType::Counter, name).ok().map(Kind::Direct))
    }

    fn define_batched(name: &str, slot: usize) -> Self {
        let Some(id) = hostcalls::define_metric(MetricType::Counter, name).ok() else { return Self(None) };
        let Some(()) = BATCHED_IDS.with(|ids| ids.get(slot).map(|c| c.set(Some(id)))) else { return Self(None) };
        Self(Some(Kind::Batched(slot)))
    }

    pub fn inc(self) {
        match self.0 {
            Some(Kind::Direct(id)) => SINK.with(|sink| sink.get()(id, 1)),
            Some(Kind::Batched(slot)) => PENDING.with(|p| {
                if let Some(c) = p.get(slot) {
                    c.set(c.get() + 1);
                }
            }),
            None => {}
        }
    }
}

/// A gauge (set) or a histogram (one sample per record): both reach Envoy at once, as they
/// record rare events.
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorded(Option<u32>);

impl Recorded {
    fn define(kind: MetricType, name: &str) -> Self {
        Self(hostcalls::define_metric(kind, name).ok())
    }

    pub fn record(self, value: u64) {
        if let Some(id) = self.0 {
            RECORD.with(|sink| sink.get()(id, value));
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
    /// When this VM last applied a single revocation fact (µs since the Unix epoch). One gauge
    /// for every VM: once each has applied a fact, it holds the last VM's time, so publish →
    /// this gauge is the propagation to every worker.
    pub revocation_last_applied: Recorded,
    /// Per VM and fact: µs from the sidecar receiving it on pub/sub to this VM applying it
    /// (the sidecar's fan-out, the control stream and Envoy's dispatch).
    pub revocation_delay: Recorded,
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
        RECORD.with(|sink| sink.set(envoy_record));
        Self {
            allowed: Counter::define_batched("authz_filter.allowed", 0),
            denied: Counter::define_batched("authz_filter.denied", 1),
            cache_hits: Counter::define_batched("authz_filter.cache_hits", 2),
            cache_misses: Counter::define_batched("authz_filter.cache_misses", 3),
            callouts: Counter::define("authz_filter.callouts"),
            callout_errors: Counter::define("authz_filter.callout_errors"),
            key_updates: Counter::define("authz_filter.key_updates"),
            native_verifications: Counter::define("authz_filter.native_verifications"),
            revoked: Counter::define("authz_filter.revoked"),
            stale_callouts: Counter::define("authz_filter.stale_callouts"),
            revocation_updates: Counter::define("authz_filter.revocation_updates"),
            revocation_last_applied: Recorded::define(
                MetricType::Gauge,
                "authz_filter.revocation_last_applied_unix_us",
            ),
            revocation_delay: Recorded::define(MetricType::Histogram, "authz_filter.revocation_delay_us"),
            policy_updates: Counter::define("authz_filter.policy_updates"),
            control_stream_closed: Counter::define("authz_filter.control_stream_closed"),
            control_stream_idle: Counter::define("authz_filter.control_stream_idle"),
        }
    }
}
