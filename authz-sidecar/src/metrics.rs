//! The sidecar's Prometheus metrics, in one registry served at `/metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(&'static str, &'static str)>;

pub struct Metrics {
    registry: Registry,
    /// `Check` answers by `result` (allow, deny, unavailable) and `code`.
    pub checks: Family<Labels, Counter>,
    /// Identity lookups by `layer` (memory, redis) and `result` (hit, miss).
    pub identity_cache: Family<Labels, Counter>,
    /// Redis commands that failed or timed out.
    pub redis_errors: Counter,
    /// JWKS fetches by `provider`, `result` (ok, error) and `reason` (startup, interval,
    /// unknown_kid).
    pub jwks_fetches: Family<Labels, Counter>,
    /// Keys of each `provider`'s current JWKS that cannot be used (skipped, each logged with
    /// its `kid`).
    pub jwks_keys_skipped: Family<Labels, Gauge>,
    /// API-key introspection calls to the auth service by `result`.
    pub introspections: Family<Labels, Counter>,
    /// Session validations at the auth service by `result` (alive, dead, error).
    pub session_checks: Family<Labels, Counter>,
    /// Filter VMs holding a control stream.
    pub control_subscribers: Gauge,
    /// Revocation facts received on the pub/sub channel.
    pub revocation_events: Counter,
    /// Reloads of the stored revocation state (after every (re)subscribe).
    pub revocation_resyncs: Counter,
    /// Revocation messages that could not be read.
    pub revocation_errors: Counter,
    /// 1 while the revocation subscription is live (after its resync), else 0.
    pub revocation_subscription_live: Gauge,
    /// When the last revocation message arrived on pub/sub (Unix seconds, microsecond precision):
    /// against the publisher's clock, the pub/sub hop of the propagation benchmark.
    pub revocation_last_received: Gauge<f64, AtomicU64>,
    /// Policy file reloads by `result` (ok, error).
    pub policy_reloads: Family<Labels, Counter>,
    /// Time spent in the `Check` handler (decoding to answer, without the gRPC transport).
    pub check_duration: Histogram,
    /// Quota decisions by `result` (granted, refused, invalid, unavailable).
    pub quota: Family<Labels, Counter>,
    /// Lease ends by `how` (released, renewed, upstream_error, not_found) .
    pub leases: Family<Labels, Counter>,
    /// Audit events by `result` (written, dropped_queue_full, dropped_redis).
    pub audit_events: Family<Labels, Counter>,
    /// Access-log entries received from Envoy.
    pub access_log_entries: Counter,
}

/// Buckets of `check_duration_seconds`: fine below a millisecond, where a cached answer is.
const CHECK_BUCKETS: [f64; 14] =
    [25e-6, 50e-6, 100e-6, 200e-6, 300e-6, 500e-6, 750e-6, 1e-3, 2e-3, 5e-3, 10e-3, 25e-3, 100e-3, 1.0];

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("authz");
        let checks = Family::<Labels, Counter>::default();
        let identity_cache = Family::<Labels, Counter>::default();
        let redis_errors = Counter::default();
        let jwks_fetches = Family::<Labels, Counter>::default();
        let introspections = Family::<Labels, Counter>::default();
        let jwks_keys_skipped = Family::<Labels, Gauge>::default();
        let control_subscribers = Gauge::default();
        let session_checks = Family::<Labels, Counter>::default();
        let policy_reloads = Family::<Labels, Counter>::default();
        let check_duration = Histogram::new(CHECK_BUCKETS);
        registry.register("check_duration_seconds", "Time in the Check handler", check_duration.clone());
        registry.register("policy_reloads", "Policy file reloads", policy_reloads.clone());
        let revocation_events = Counter::default();
        let revocation_resyncs = Counter::default();
        let revocation_errors = Counter::default();
        registry.register("revocation_events", "Revocation facts received on pub/sub", revocation_events.clone());
        registry.register("revocation_resyncs", "Reloads of the stored revocation state", revocation_resyncs.clone());
        registry.register("revocation_errors", "Revocation messages that could not be read", revocation_errors.clone());
        let revocation_subscription_live = Gauge::default();
        registry.register(
            "revocation_subscription_live",
            "1 while the revocation subscription is live (after its resync), else 0",
            revocation_subscription_live.clone(),
        );
        let revocation_last_received = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "revocation_last_received_timestamp_seconds",
            "When the last revocation message arrived on pub/sub (Unix time)",
            revocation_last_received.clone(),
        );
        registry.register("session_checks", "Session validations at the auth service", session_checks.clone());
        registry.register("checks", "ext_authz Check answers", checks.clone());
        registry.register("identity_cache", "Identity cache lookups", identity_cache.clone());
        registry.register("redis_errors", "Redis commands that failed or timed out", redis_errors.clone());
        registry.register("jwks_fetches", "JWKS fetches from the auth service", jwks_fetches.clone());
        registry.register("introspections", "API-key introspection calls", introspections.clone());
        registry.register(
            "jwks_keys_skipped",
            "Keys of the current JWKS that cannot be used and are skipped",
            jwks_keys_skipped.clone(),
        );
        registry.register("control_subscribers", "Filter VMs holding a control stream", control_subscribers.clone());
        let quota = Family::<Labels, Counter>::default();
        let leases = Family::<Labels, Counter>::default();
        let audit_events = Family::<Labels, Counter>::default();
        let access_log_entries = Counter::default();
        registry.register("quota_decisions", "Quota decisions on compute requests", quota.clone());
        registry.register("quota_lease_updates", "Lease releases and renewals", leases.clone());
        registry.register("audit_events", "Audit events written or dropped", audit_events.clone());
        registry.register("access_log_entries", "Access-log entries received from Envoy", access_log_entries.clone());
        // Every series an alert or a dashboard panel reads exists from the start, at 0, rather
        // than from its first event: `increase()` over a series that appears at 1 sees nothing.
        let zero: [(&Family<Labels, Counter>, &str, &[&'static str]); 6] = [
            (&introspections, "result", &["active", "inactive", "error", "overloaded"]),
            (&session_checks, "result", &["alive", "dead", "error"]),
            (&policy_reloads, "result", &["ok", "error"]),
            (&quota, "result", &["granted", "refused", "invalid", "unavailable"]),
            (&leases, "how", &["released", "renewed", "upstream_error", "not_found"]),
            (&audit_events, "result", &["written", "dropped_queue_full", "dropped_redis"]),
        ];
        for (family, key, values) in zero {
            for value in values {
                let _ = family.get_or_create(&vec![(key, *value)]);
            }
        }
        for layer in ["memory", "redis"] {
            for result in ["hit", "miss"] {
                let _ = identity_cache.get_or_create(&vec![("layer", layer), ("result", result)]);
            }
        }
        let _ = checks.get_or_create(&vec![("result", "allow"), ("code", "ok")]);
        Self {
            registry,
            quota,
            leases,
            audit_events,
            access_log_entries,
            checks,
            identity_cache,
            redis_errors,
            jwks_fetches,
            jwks_keys_skipped,
            introspections,
            session_checks,
            control_subscribers,
            revocation_events,
            revocation_resyncs,
            revocation_errors,
            revocation_subscription_live,
            revocation_last_received,
            policy_reloads,
            check_duration,
        }
    }
}

impl Metrics {
    /// OpenMetrics text (what a Prometheus server asks for first).
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// The Prometheus text format 0.0.4 (what `promtool check metrics`, older scrapers and
    /// `curl` read): the same series, counters' `HELP`/`TYPE` named as their samples (with
    /// `_total`), no `# EOF`.
    pub fn render_text(&self) -> String {
        to_text_format(&self.render())
    }
}

/// OpenMetrics text to the Prometheus text format 0.0.4. OpenMetrics names a counter family
/// without `_total` and its samples with it; 0.0.4 names both with it.
pub fn to_text_format(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len() + 16 * counters.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| Some((p, line.strip_prefix(p)?)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) { "_total" } else { "" };
                out.push_str(format!("{prefix}{name}{total} {tail}").trim_end());
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_with_total_in_the_text_format() {
        let m = Metrics::default();
        m.redis_errors.inc();
        m.control_subscribers.set(2);
        let open = m.render();
        assert!(open.contains("# TYPE authz_redis_errors counter\n") && open.ends_with("# EOF\n"));
        let text = m.render_text();
        assert!(text.contains("# HELP authz_redis_errors_total Redis commands"), "{text}");
        assert!(text.contains("# TYPE authz_redis_errors_total counter\nauthz_redis_errors_total 1\n"), "{text}");
        assert!(text.contains("# TYPE authz_control_subscribers gauge\nauthz_control_subscribers 2\n"), "{text}");
        assert!(text.contains("# TYPE authz_check_duration_seconds histogram\n"), "{text}");
        assert!(!text.contains("# EOF"));
    }
}
