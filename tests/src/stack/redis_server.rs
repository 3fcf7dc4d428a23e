//! Redis for a stack: one server, or a three-master Redis Cluster (`Options::redis_cluster`).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::process::Command;

use super::{Stack, spawn_logged, wait_until};
use crate::paths;

impl Stack {
    /// Starts Redis on the stack's port (again, after `stop_redis`: empty, as after a crash
    /// without persistence).
    pub async fn start_redis(&mut self) -> anyhow::Result<()> {
        let log = self.dir().join("redis.log");
        let mut cmd = Command::new(paths::redis_server());
        cmd.args(["--bind", "127.0.0.1", "--port", &self.ports.redis.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir());
        if let Some(password) = &self.opts.redis_password {
            cmd.args(["--requirepass", password]);
        }
        let mut child = spawn_logged(cmd, &log)?;
        let port = self.ports.redis;
        wait_until("redis-server", Duration::from_secs(10), &log, &mut child, || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
        })
        .await?;
        self.redis = Some(child);
        Ok(())
    }

    /// The Redis URL the auth stand-in and the tests use (a cluster: its nodes, comma-separated),
    /// with the password when Redis has one.
    pub fn redis_url(&self) -> String {
        redis_url_with(self.ports.redis, &self.cluster_ports, self.opts.redis_password.as_deref())
    }

    /// The URL in the sidecar's configuration: never with the password, which the sidecar
    /// reads from its own file.
    pub(super) fn sidecar_redis_url(&self) -> String {
        redis_url_of(self.ports.redis, &self.cluster_ports)
    }

    /// Three Redis nodes in cluster mode, joined into one cluster of three masters.
    pub(super) async fn start_redis_cluster(&mut self) -> anyhow::Result<()> {
        for &port in &self.cluster_ports.clone() {
            let log = self.dir().join(format!("redis-{port}.log"));
            let mut cmd = Command::new(paths::redis_server());
            cmd.args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--cluster-config-file", &format!("nodes-{port}.conf")])
                .arg("--dir")
                .arg(self.dir());
            let mut child = spawn_logged(cmd, &log)?;
            wait_until("redis-server (cluster node)", Duration::from_secs(10), &log, &mut child, || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            })
            .await?;
            self.cluster_nodes.push(child);
        }
        let nodes: Vec<String> = self.cluster_ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let out = Command::new(paths::redis_cli())
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .await
            .context("running redis-cli --cluster create")?;
        anyhow::ensure!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // Every node must agree that all slots are served before anyone uses the cluster.
        let start = Instant::now();
        for port in self.cluster_ports.clone() {
            loop {
                let client = redis::Client::open(format!("redis://127.0.0.1:{port}"))?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                let info: String = redis::cmd("CLUSTER").arg("INFO").query_async(&mut conn).await?;
                if info.contains("cluster_state:ok") {
                    break;
                }
                anyhow::ensure!(start.elapsed() < Duration::from_secs(20), "Redis Cluster not ok: {info}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Kills Redis (as a crash would).
    pub async fn stop_redis(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.redis.take() {
            c.kill().await?;
        }
        Ok(())
    }
}

pub(super) fn redis_url_with(port: u16, cluster_ports: &[u16], password: Option<&str>) -> String {
    let url = redis_url_of(port, cluster_ports);
    match password {
        Some(p) => url.replace("redis://", &format!("redis://:{p}@")),
        None => url,
    }
}

pub(super) fn redis_url_of(port: u16, cluster_ports: &[u16]) -> String {
    if cluster_ports.is_empty() {
        format!("redis://127.0.0.1:{port}")
    } else {
        cluster_ports.iter().map(|p| format!("redis://127.0.0.1:{p}")).collect::<Vec<_>>().join(",")
    }
}
