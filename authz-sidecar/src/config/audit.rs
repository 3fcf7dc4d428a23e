//! The `audit` section: where audit events go and how much may wait for Redis.

use serde::Deserialize;

/// The audit trail: one event per request decision, appended to a Redis Stream.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuditConfig {
    /// Accept Envoy's access-log stream and write events (off: the access-log service
    /// answers but discards, counting nothing).
    #[serde(default = "super::keys::yes")]
    pub enabled: bool,
    /// The Redis Stream key.
    #[serde(default = "default_audit_stream")]
    pub stream: String,
    /// Approximate maximum length of the stream (`XADD MAXLEN ~`).
    #[serde(default = "default_audit_maxlen")]
    pub max_len: u64,
    /// Events waiting for Redis; beyond it new events are dropped and counted.
    #[serde(default = "default_audit_queue")]
    pub queue_capacity: usize,
    /// Events written per Redis round trip (one pipeline).
    #[serde(default = "default_audit_batch")]
    pub batch_size: usize,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            stream: default_audit_stream(),
            max_len: default_audit_maxlen(),
            queue_capacity: default_audit_queue(),
            batch_size: default_audit_batch(),
        }
    }
}

fn default_audit_stream() -> String {
    "authz:audit".into()
}
fn default_audit_maxlen() -> u64 {
    1_000_000
}
fn default_audit_queue() -> usize {
    10_000
}
fn default_audit_batch() -> usize {
    256
}
