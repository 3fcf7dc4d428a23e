//! Revocation propagation benchmark (`bench/revocation-propagation.sh`): from `PUBLISH` on the
//! revocation channel to the fact applied in every Envoy worker's VM, hop by hop, over many
//! revocations published one at a time.
//!
//! Nothing polls while a fact travels: each hop records when it saw the fact and the benchmark
//! reads the records afterwards. The sidecar's gauge `authz_revocation_last_received_timestamp_seconds`
//! (pub/sub hop), the filter's gauge `authz_filter.revocation_last_applied_unix_us` (one for
//! every VM, so the last VM's time once each has applied: each worker's and the main thread's)
//! and its histogram
//! `authz_filter.revocation_delay_us` (sidecar → each VM). The benchmark waits until Envoy's
//! `revocation_updates` counter shows every VM applied the fact, reads the times, then probes
//! every keep-alive connection once with the revoked token (cached in every worker beforehand):
//! each must answer 401.
//!
//! With `--load R`, R requests per second (paced) run on connections of their own throughout.
//! With `--held N`, N stored revocations are loaded first (through a resync: the sidecar's
//! pub/sub connection is killed, it reloads the stored state and sends every VM a snapshot),
//! so each new fact lands in a large set.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use authz_core::revocation::Revocation;
use authz_e2e::auth_standin::{REVOCATION_CHANNEL, revocation_key};
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{self, DEV_KID, sign_kid, user_claims};
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    /// Revocations to measure.
    #[arg(long, default_value_t = 300)]
    revocations: usize,
    /// Keep-alive connections probed after each fact (together they cover every worker).
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Envoy workers.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
    /// Stored revocations loaded before the measurement.
    #[arg(long, default_value_t = 0)]
    held: usize,
    /// Quiet time before each publish (milliseconds).
    #[arg(long, default_value_t = 20)]
    pause_ms: u64,
    /// Background traffic while measuring, in requests per second (paced, on connections of
    /// their own, with one cached token): propagation while the workers serve requests.
    #[arg(long, default_value_t = 0)]
    load: u32,
}

/// Paced background requests until the returned flag is set; the count of answers comes back
/// through the handle.
fn background_load(url: String, auth: String, rate: u32) -> (Arc<AtomicBool>, tokio::task::JoinHandle<u64>) {
    const TASKS: u32 = 4;
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (url, auth, stop) = (url.clone(), auth.clone(), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut tick = tokio::time::interval(Duration::from_secs_f64(f64::from(TASKS) / f64::from(rate)));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let mut answered = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if client.get(&url).header("authorization", &auth).send().await.is_ok() {
                        answered += 1;
                    }
                }
                answered
            })
        })
        .collect();
    let total = tokio::spawn(async move {
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap_or(0);
        }
        n
    });
    (stop, total)
}

fn unix_micros() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1e6
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

struct Probe<'a> {
    stack: &'a Stack,
    /// Filter VMs holding a control stream: one per worker and Envoy's main thread's.
    vms: f64,
}

impl Probe<'_> {
    /// Envoy's stats whose names match `filter` (a regex).
    async fn envoy(&self, filter: &str) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/stats?filter={filter}", self.stack.ports.envoy_admin);
        Ok(self.stack.client.get(url).send().await?.text().await?)
    }

    async fn updates(&self) -> anyhow::Result<f64> {
        let n = self.stack.envoy_stat("authz_filter.revocation_updates").await.context("no revocation_updates stat")?;
        Ok(n as f64)
    }

    /// Waits until every VM applied one more update than `base`.
    async fn applied_everywhere(&self, base: f64) -> anyhow::Result<()> {
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(5)).await;
            if self.updates().await? >= base + self.vms {
                return Ok(());
            }
            anyhow::ensure!(start.elapsed() < Duration::from_secs(10), "not applied by every VM after 10 s");
        }
    }
}

/// Loads `n` stored revocations and makes the sidecar resync them (so every VM gets them in a
/// snapshot), as after a restart with that many facts in Redis.
async fn hold(probe: &Probe<'_>, conn: &mut redis::aio::MultiplexedConnection, n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            let r = Revocation::Token { jti: format!("held-{i}"), expires_at: tokens::now() + 3600 };
            pipe.cmd("SET").arg(revocation_key(&r)).arg(serde_json::to_string(&r)?).arg("EX").arg(3600).ignore();
        }
        pipe.query_async::<()>(conn).await?;
    }
    let base = probe.updates().await?;
    redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async::<i64>(conn).await?;
    probe.applied_everywhere(base).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut opts = Options::test(Mode::Wasm)?;
    opts.concurrency = cli.concurrency;
    let stack = Stack::start(opts).await?;
    let probe = Probe { stack: &stack, vms: f64::from(cli.concurrency) + 1.0 };
    let url = stack.gateway_url("/api/tools/bench");
    let clients: Vec<reqwest::Client> = (0..cli.connections)
        .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(5)).build())
        .collect::<Result<_, _>>()?;
    let redis = redis::Client::open(format!("redis://127.0.0.1:{}", stack.ports.redis))?;
    let mut conn = redis.get_multiplexed_async_connection().await?;
    if cli.held > 0 {
        hold(&probe, &mut conn, cli.held).await?;
    }

    let load = (cli.load > 0).then(|| {
        let claims = user_claims("u-load", "load@lab.example", &["user"]);
        sign_kid(&claims, DEV_KID).map(|t| background_load(url.clone(), format!("Bearer {t}"), cli.load))
    });
    let load = load.transpose()?;
    let started = Instant::now();

    let (mut pubsub_hop, mut fanout_hop, mut end_to_end) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..cli.revocations {
        let claims = user_claims("u-bench", "bench@lab.example", &["user"]);
        let auth = format!("Bearer {}", sign_kid(&claims, DEV_KID)?);
        for c in &clients {
            let status = c.get(&url).header("authorization", &auth).send().await?.status();
            anyhow::ensure!(status == 200, "warm-up answered {status}");
        }
        let r = Revocation::Token {
            jti: claims["jti"].as_str().unwrap_or_default().into(),
            expires_at: tokens::now() + 900,
        };
        let json = serde_json::to_string(&r)?;
        redis::cmd("SET").arg(revocation_key(&r)).arg(&json).arg("EX").arg(900).query_async::<()>(&mut conn).await?;
        let base = probe.updates().await?;
        tokio::time::sleep(Duration::from_millis(cli.pause_ms)).await;

        let published = unix_micros();
        redis::cmd("PUBLISH").arg(REVOCATION_CHANNEL).arg(&json).query_async::<i64>(&mut conn).await?;
        probe.applied_everywhere(base).await?;

        let received = stack
            .sidecar_metric("authz_revocation_last_received_timestamp_seconds")
            .await
            .context("no revocation_last_received stat at the sidecar")?
            * 1e6;
        let applied = stack
            .envoy_stat("authz_filter.revocation_last_applied_unix_us")
            .await
            .context("no revocation_last_applied stat")? as f64;
        pubsub_hop.push((received - published) / 1000.0);
        fanout_hop.push((applied - received) / 1000.0);
        end_to_end.push((applied - published) / 1000.0);
        for c in &clients {
            let status = c.get(&url).header("authorization", &auth).send().await?.status();
            anyhow::ensure!(status == 401, "a connection answered {status} after every VM applied the revocation");
        }
    }

    let load_rate = match load {
        Some((stop, total)) => {
            stop.store(true, Ordering::Relaxed);
            total.await? as f64 / started.elapsed().as_secs_f64()
        }
        None => 0.0,
    };
    // Envoy merges the VMs' histograms on its stats flush (every 5 s by default).
    tokio::time::sleep(Duration::from_secs(6)).await;
    let per_vm = probe.envoy("revocation_delay_us").await?;
    let stats = probe.envoy("worker_.*downstream_cx_active").await?;
    let spread: Vec<&str> = stats.lines().filter(|l| l.starts_with("listener.127")).collect();
    println!("connections per worker: {}", spread.join(", "));
    println!(
        "revocations={} held={} connections={} envoy_workers={} background={load_rate:.0} req/s (each fact probed: 401 on every connection)",
        cli.revocations, cli.held, cli.connections, cli.concurrency
    );
    println!("milliseconds, one fact at a time:");
    for (name, v) in [
        ("PUBLISH -> sidecar received", &mut pubsub_hop),
        ("sidecar -> applied in every VM", &mut fanout_hop),
        ("PUBLISH -> applied in every VM", &mut end_to_end),
    ] {
        v.sort_by(f64::total_cmp);
        println!(
            "{name:>32}: p50={:.3} p90={:.3} p99={:.3} max={:.3}",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 0.99),
            percentile(v, 1.0)
        );
    }
    println!("sidecar -> each VM, Envoy's histogram (µs, interpolated in its buckets):");
    for line in per_vm.lines() {
        println!("  {line}");
    }
    Ok(())
}
