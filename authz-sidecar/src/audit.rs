//! The audit trail's writer: a bounded queue in front of a Redis Stream.
//!
//! Audit fails open and never slows a request: events are queued without waiting (a full
//! queue drops the event), and one task writes them in batches, one pipelined round trip per
//! batch (`XADD <stream> MAXLEN ~ <n> * field value ...`). When Redis is slow or down, the batch
//! in hand is dropped; every drop is counted (`authz_audit_events_total{result=...}`) and a
//! summary is logged at most every ten seconds, so an outage is visible but never queued
//! without bound.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::redis_conn::RedisConn;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::AuditConfig;
use crate::metrics::Metrics;

/// One event: field name and value pairs, in the documented order (see the README's schema).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditEvent {
    pub fields: Vec<(&'static str, String)>,
}

impl AuditEvent {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

/// Where events are submitted.
pub struct AuditSink {
    tx: mpsc::Sender<AuditEvent>,
    metrics: Arc<Metrics>,
    enabled: bool,
}

const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl AuditSink {
    /// Starts the writer task.
    pub fn spawn(conn: RedisConn, config: AuditConfig, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let enabled = config.enabled;
        if enabled {
            tokio::spawn(write_loop(rx, conn, config, timeout, Arc::clone(&metrics)));
        }
        Self { tx, metrics, enabled }
    }
}

impl crate::backend::AuditWriter for AuditSink {
    /// Queues an event without waiting; a full queue drops it (counted).
    fn submit(&self, event: AuditEvent) {
        if !self.enabled {
            return;
        }
        if self.tx.try_send(event).is_err() {
            self.metrics.audit_events.get_or_create(&vec![("result", "dropped_queue_full")]).inc();
        }
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<AuditEvent>,
    mut conn: RedisConn,
    config: AuditConfig,
    timeout: Duration,
    metrics: Arc<Metrics>,
) {
    let written = metrics.audit_events.get_or_create(&vec![("result", "written")]).clone();
    let dropped = metrics.audit_events.get_or_create(&vec![("result", "dropped_redis")]).clone();
    let full = metrics.audit_events.get_or_create(&vec![("result", "dropped_queue_full")]).clone();
    let mut batch = Vec::with_capacity(config.batch_size);
    let mut last_log = Instant::now();
    let (mut logged_dropped, mut logged_full) = (0u64, 0u64);
    let mut failing = false;
    while rx.recv_many(&mut batch, config.batch_size).await > 0 {
        let mut pipe = redis::pipe();
        for event in &batch {
            let cmd = pipe.cmd("XADD").arg(&config.stream).arg("MAXLEN").arg("~").arg(config.max_len).arg("*");
            for (k, v) in &event.fields {
                cmd.arg(*k).arg(v);
            }
            cmd.ignore();
        }
        let n = batch.len() as u64;
        match tokio::time::timeout(timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {
                written.inc_by(n);
                if failing {
                    info!("audit: writing to Redis again");
                    failing = false;
                }
            }
            Ok(Err(e)) => {
                dropped.inc_by(n);
                if !failing {
                    warn!(error = %e, "audit: Redis refused a batch; events are dropped (and counted) until it is back");
                    failing = true;
                }
            }
            Err(_) => {
                dropped.inc_by(n);
                if !failing {
                    warn!(
                        "audit: Redis did not answer in {timeout:?}; events are dropped (and counted) until it is back"
                    );
                    failing = true;
                }
            }
        }
        batch.clear();
        if last_log.elapsed() >= DROP_LOG_INTERVAL {
            let (d, f) = (dropped.get(), full.get());
            if d > logged_dropped || f > logged_full {
                warn!(
                    dropped_redis = d - logged_dropped,
                    dropped_queue_full = f - logged_full,
                    "audit: events dropped in the last {DROP_LOG_INTERVAL:?}"
                );
            }
            (logged_dropped, logged_full) = (d, f);
            last_log = Instant::now();
        }
    }
}
