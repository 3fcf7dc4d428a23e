//! The sidecar's Redis: one node, or a Redis Cluster (`redisCluster: true`, `redisUrl` a
//! comma-separated list of seed nodes). Either way one cloneable handle that every Redis user
//! (cache, quota scripts, audit stream, readiness) shares.
//!
//! Both kinds connect lazily, so the sidecar starts (and reports not-ready) while Redis is away,
//! and reconnect by themselves. In a cluster every multi-key operation the sidecar makes stays in
//! one slot: the quota scripts' keys share the hash tag `{quota}`, the audit stream is one key.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, RedisResult, Value};

#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    Cluster(Arc<LazyCluster>),
}

/// A cluster connection made on first use (and again after a failed attempt).
pub struct LazyCluster {
    client: ClusterClient,
    conn: tokio::sync::OnceCell<ClusterConnection>,
}

impl LazyCluster {
    async fn get(&self) -> RedisResult<ClusterConnection> {
        self.conn.get_or_try_init(|| self.client.get_async_connection()).await.cloned()
    }
}

/// The seed URLs of `redis_url` (one, or a comma-separated list for a cluster).
pub fn seeds(redis_url: &str) -> Vec<&str> {
    redis_url.split(',').map(str::trim).filter(|s| !s.is_empty()).collect()
}

impl RedisConn {
    /// A handle on `redis_url`; `timeout` bounds each command's answer.
    pub fn open(redis_url: &str, cluster: bool, timeout: Duration) -> RedisResult<Self> {
        let connect_timeout = timeout.max(Duration::from_millis(500));
        if cluster {
            let client = ClusterClientBuilder::new(seeds(redis_url))
                .connection_timeout(connect_timeout)
                .response_timeout(timeout)
                .retries(2)
                .build()?;
            return Ok(Self::Cluster(Arc::new(LazyCluster { client, conn: tokio::sync::OnceCell::new() })));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        Ok(Self::Single(ConnectionManager::new_lazy_with_config(redis::Client::open(redis_url)?, config)?))
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(lazy) => Box::pin(async move { lazy.get().await?.req_packed_command(cmd).await }),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(cmd, offset, count),
            Self::Cluster(lazy) => {
                Box::pin(async move { lazy.get().await?.req_packed_commands(cmd, offset, count).await })
            }
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// The master nodes of the cluster `seed` belongs to, as clients (with the seed's credentials).
pub async fn cluster_masters(seed: &str) -> RedisResult<Vec<redis::Client>> {
    let mut conn = redis::Client::open(seed)?.get_multiplexed_async_connection().await?;
    let nodes: String = redis::cmd("CLUSTER").arg("NODES").query_async(&mut conn).await?;
    // "redis://user:pass@host:port/..." keeps everything up to the '@' for the other nodes.
    let scheme_end = seed.find("://").map_or(0, |i| i + 3);
    let creds = seed[scheme_end..].split('/').next().and_then(|authority| authority.rsplit_once('@')).map(|(c, _)| c);
    let scheme = &seed[..scheme_end];
    let mut out = Vec::new();
    for line in nodes.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(addr), Some(flags)) = (fields.get(1), fields.get(2)) else { continue };
        if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
            continue;
        }
        // "ip:port@cport[,hostname]"
        let host_port = addr.split('@').next().unwrap_or(addr);
        let url = match creds {
            Some(c) => format!("{scheme}{c}@{host_port}"),
            None => format!("{scheme}{host_port}"),
        };
        out.push(redis::Client::open(url)?);
    }
    Ok(out)
}
