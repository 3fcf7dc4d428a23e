//! Revocation propagation benchmark: time from `PUBLISH` on the revocation channel to the first
//! 401 on every Envoy worker, over many revocations (`bench/revocation-propagation.sh`).
//!
//! Starts the whole stack (wasm filter, `--concurrency 2`), keeps several keep-alive
//! connections open (each lives on one worker, so together they cover every worker), and for
//! each revocation: warms a fresh token on every connection, stores and publishes its `jti`,
//! then polls every connection until it answers 401. Reports p50/p90/p99/max of the time until
//! the last connection refused, and of the per-connection times.

use std::time::{Duration, Instant};

use authz_core::revocation::Revocation;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{self, DEV_KID, sign_kid, user_claims};
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    /// Revocations to measure.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
    /// Keep-alive connections polled after each publish.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Envoy workers.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut opts = Options::test(Mode::Wasm)?;
    opts.concurrency = cli.concurrency;
    let stack = Stack::start(opts).await?;
    let url = stack.gateway_url("/api/tools/bench");
    let clients: Vec<reqwest::Client> = (0..cli.connections)
        .map(|_| reqwest::Client::builder().pool_max_idle_per_host(1).timeout(Duration::from_secs(5)).build())
        .collect::<Result<_, _>>()?;
    let redis = redis::Client::open(format!("redis://127.0.0.1:{}", stack.ports.redis))?;
    let mut conn = redis.get_multiplexed_async_connection().await?;

    let mut all_workers = Vec::with_capacity(cli.revocations);
    let mut per_connection = Vec::with_capacity(cli.revocations * cli.connections);
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
        redis::cmd("SET")
            .arg(authz_e2e::auth_standin::revocation_key(&r))
            .arg(&json)
            .arg("EX")
            .arg(900)
            .query_async::<()>(&mut conn)
            .await?;
        let published = Instant::now();
        redis::cmd("PUBLISH")
            .arg(authz_e2e::auth_standin::REVOCATION_CHANNEL)
            .arg(&json)
            .query_async::<i64>(&mut conn)
            .await?;
        let polls = clients.iter().map(|c| {
            let (c, url, auth) = (c.clone(), url.clone(), auth.clone());
            async move {
                loop {
                    let status = c.get(&url).header("authorization", &auth).send().await?.status();
                    if status == 401 {
                        return Ok::<Duration, anyhow::Error>(published.elapsed());
                    }
                    anyhow::ensure!(published.elapsed() < Duration::from_secs(5), "not revoked after 5 s");
                }
            }
        });
        let times = futures::future::try_join_all(polls).await?;
        all_workers.push(times.iter().copied().max().unwrap_or_default());
        per_connection.extend(times);
    }
    // Which workers held the connections (Envoy's per-worker listener gauges).
    let stats = stack
        .client
        .get(format!("http://127.0.0.1:{}/stats?filter=worker_.*downstream_cx_active", stack.ports.envoy_admin))
        .send()
        .await?
        .text()
        .await?;
    let spread: Vec<&str> = stats.lines().filter(|l| l.starts_with("listener.127")).collect();
    all_workers.sort();
    per_connection.sort();
    println!("connections per worker: {}", spread.join(", "));
    println!("revocations={} connections={} envoy_workers={}", cli.revocations, cli.connections, cli.concurrency);
    for (name, v) in [("every connection refused", &all_workers), ("per connection", &per_connection)] {
        println!(
            "{name:>26}: p50={} ms p90={} ms p99={} ms max={} ms",
            ms(percentile(v, 0.5)),
            ms(percentile(v, 0.9)),
            ms(percentile(v, 0.99)),
            ms(percentile(v, 1.0))
        );
    }
    Ok(())
}
