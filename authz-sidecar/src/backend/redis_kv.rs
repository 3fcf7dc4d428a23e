//! Redis as a shared cache: `GET` and `SET EX` with a deadline, errors counted, never fatal.
//!
//! Callers treat a slow or absent Redis as a cache miss; the counter
//! `authz_redis_errors_total` and `/readyz` make the outage visible.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::redis_conn::RedisConn;
use redis::AsyncCommands;
use tracing::debug;

use crate::backend::SharedKv;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct RedisKv {
    conn: RedisConn,
    prefix: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

impl RedisKv {
    pub fn new(conn: RedisConn, prefix: String, timeout: Duration, metrics: Arc<Metrics>) -> Self {
        Self { conn, prefix, timeout, metrics }
    }
}

#[tonic::async_trait]
impl SharedKv for RedisKv {
    /// `<prefix><kind>:<hex digest>`: keys never contain a credential.
    fn key(&self, kind: &str, digest: &[u8; 32]) -> String {
        format!("{}{kind}:{}", self.prefix, hex::encode(digest))
    }

    async fn get(&self, key: &str) -> Option<String> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, conn.get::<_, Option<String>>(key)).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                debug!(error = %e, "redis GET failed");
                None
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                debug!("redis GET timed out");
                None
            }
        }
    }

    /// Stores `value` for `ttl` (rounded down to whole seconds; nothing is stored under 1 s).
    async fn set_ex(&self, key: &str, value: &str, ttl: Duration) {
        if ttl.as_secs() == 0 {
            return;
        }
        let mut conn = self.conn.clone();
        match tokio::time::timeout(self.timeout, conn.set_ex::<_, _, ()>(key, value, ttl.as_secs())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                debug!(error = %e, "redis SET failed");
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                debug!("redis SET timed out");
            }
        }
    }

    /// `SET key 1 NX EX ttl`: true for the first caller, false once the key exists. Unlike the
    /// cache calls, an error is returned: a single-use check that cannot be made must refuse.
    async fn claim_once(&self, key: &str, ttl: Duration) -> Result<bool, ()> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(1).arg("NX").arg("EX").arg(ttl.as_secs().max(1));
        match tokio::time::timeout(self.timeout, cmd.query_async::<Option<String>>(&mut conn)).await {
            Ok(Ok(v)) => Ok(v.is_some()),
            Ok(Err(e)) => {
                self.metrics.redis_errors.inc();
                debug!(error = %e, "redis SET NX failed");
                Err(())
            }
            Err(_) => {
                self.metrics.redis_errors.inc();
                debug!("redis SET NX timed out");
                Err(())
            }
        }
    }
}
