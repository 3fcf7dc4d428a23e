//! How the hit path's cost grows with work: distinct live tokens, policy size, revocation-set
//! size and Envoy workers; and resident memory against cached identities.
//!
//! The token and memory curves use ES256 tokens (signing 10^6 of them takes seconds, RSA
//! would take minutes); on the hit path the algorithm does not matter, the token is not
//! verified again.

use std::time::{Duration, Instant};

use authz_core::revocation::Revocation;
use authz_e2e::auth_standin::revocation_key;
use authz_e2e::tokens::now;
use serde::Serialize;

use crate::loadgen::Credentials;
use crate::variants::Filter;
use crate::{Bench, measure, procstat, tokens};

#[derive(Debug, Serialize)]
pub struct Point {
    pub x: usize,
    pub rps: f64,
    pub envoy_cpu_us_per_req: f64,
}

#[derive(Debug, Serialize)]
pub struct WorkerPoint {
    pub workers: u32,
    pub bare_rps: f64,
    pub ours_rps: f64,
}

#[derive(Debug, Serialize)]
pub struct MemoryPoint {
    pub identities: usize,
    /// Envoy (one worker) with our filter (cache capacity `min(largest point, 200000)`) after
    /// this many distinct tokens.
    pub envoy_rss_mib: f64,
    /// The sidecar (memory cache capacity 100000, its default) after this many distinct tokens
    /// through native ext_authz.
    pub sidecar_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Curves {
    pub tokens: Vec<Point>,
    pub policy: Vec<Point>,
    pub revocations: Vec<Point>,
    pub workers: Vec<WorkerPoint>,
    pub memory: Vec<MemoryPoint>,
    /// Envoy's RSS with no filter, for the memory comparison.
    pub envoy_bare_rss_mib: f64,
}

const ES_KID: &str = "dev-es256";
/// `MAX_CACHE_CAPACITY` of the filter's configuration.
const FILTER_CACHE_BOUND: usize = 200_000;

pub async fn run(bench: &mut Bench, memory_points: &[usize]) -> anyhow::Result<Curves> {
    let tokens = token_curve(bench).await?;
    let policy = policy_curve(bench).await?;
    let revocations = revocation_curve(bench).await?;
    let workers = worker_curve(bench).await?;
    bench.envoy_with(Filter::None).await?;
    let envoy_bare_rss_mib = procstat::rss_kib(bench.envoy_pid()?)? as f64 / 1024.0;
    let memory = memory_curve(bench, memory_points).await?;
    Ok(Curves { tokens, policy, revocations, workers, memory, envoy_bare_rss_mib })
}

/// Our filter with a cache large enough for `capacity` identities.
async fn ours_with_cache(bench: &mut Bench, capacity: usize) -> anyhow::Result<()> {
    bench.stack.opts.filter_config_override = Some(serde_json::json!({ "cacheCapacity": capacity }));
    let r = bench.envoy_with(Filter::Ours).await;
    bench.stack.opts.filter_config_override = None;
    r
}

/// Visits every token once (caching it), then saturates on the pool.
async fn hit_point(bench: &Bench, x: usize, pool: &[String]) -> anyhow::Result<Point> {
    let t = bench.target(Credentials::pool("authorization", pool)?);
    measure::visit_all(&t, &bench.settings, pool, "authorization").await?;
    measure::warm(&t, &bench.settings).await?;
    let mut rounds = Vec::new();
    for _ in 0..bench.settings.rounds {
        rounds.push(measure::saturate(&t, &bench.settings, bench.envoy_pid()?, None).await?);
    }
    let s = crate::median(rounds)?;
    eprintln!("bench: curve x={x}: {:.0} req/s, Envoy {:.1} µs/req", s.rps, s.envoy_cpu_us_per_req);
    Ok(Point { x, rps: s.rps, envoy_cpu_us_per_req: s.envoy_cpu_us_per_req })
}

async fn token_curve(bench: &mut Bench) -> anyhow::Result<Vec<Point>> {
    eprintln!("bench: curve: distinct live tokens");
    let all = tokens::bearer_tokens(ES_KID, 0, 100_000)?;
    let mut points = Vec::new();
    for n in [1_000usize, 100_000] {
        ours_with_cache(bench, 200_000).await?;
        points.push(hit_point(bench, n, &all[..n]).await?);
    }
    Ok(points)
}

/// Waits until the Envoy counter `name` reaches `at_least`.
async fn wait_stat(bench: &Bench, name: &str, at_least: u64) -> anyhow::Result<()> {
    let start = Instant::now();
    while bench.stack.envoy_stat(name).await.unwrap_or(0) < at_least {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "{name} did not reach {at_least}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// `n` template rules; the bench request matches only the last.
fn policy(n: usize) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "id": format!("r{i}"),
                "template": format!("/api/tools/p{i}/labs/{{lab}}/**"),
                "methods": ["GET", "POST"],
                "rolesAnyOf": ["admin", "user"],
                "bind": {"lab": "labs"}
            })
        })
        .collect();
    serde_json::json!({ "defaultAction": "deny", "routes": routes })
}

async fn policy_curve(bench: &mut Bench) -> anyhow::Result<Vec<Point>> {
    eprintln!("bench: curve: policy size");
    bench.envoy_with(Filter::Ours).await?;
    let workers = u64::from(bench.stack.opts.concurrency) + 1;
    let default_path = bench.path.clone();
    let pool = bench.hit_pool.clone();
    let mut points = Vec::new();
    for n in [10usize, 200, 2000] {
        let before = bench.stack.envoy_stat("authz_filter.policy_updates").await.unwrap_or(0);
        bench.stack.write_policy(&policy(n))?;
        wait_stat(bench, "authz_filter.policy_updates", before + workers).await?;
        bench.path = format!("/api/tools/p{}/labs/l2/item", n - 1);
        let p = hit_point(bench, n, &pool).await;
        bench.path.clone_from(&default_path);
        points.push(p?);
    }
    let before = bench.stack.envoy_stat("authz_filter.policy_updates").await.unwrap_or(0);
    bench.stack.write_policy(&serde_json::json!({ "routes": [] }))?;
    wait_stat(bench, "authz_filter.policy_updates", before + workers).await?;
    Ok(points)
}

/// Stores `n` token revocations (as the auth service would) and restarts the sidecar, which
/// loads them and pushes the full set to the filters.
async fn load_revocations(bench: &mut Bench, n: usize) -> anyhow::Result<()> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{}", bench.stack.ports.redis))?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    redis::cmd("FLUSHDB").query_async::<()>(&mut conn).await?;
    let expires_at = now() + 3600;
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let mut pipe = redis::pipe();
        for _ in chunk {
            let r = Revocation::Token { jti: uuid::Uuid::new_v4().to_string(), expires_at };
            pipe.cmd("SET").arg(revocation_key(&r)).arg(serde_json::to_string(&r)?).arg("EX").arg(3600).ignore();
        }
        pipe.query_async::<()>(&mut conn).await?;
    }
    bench.stack.stop_sidecar().await?;
    bench.stack.start_sidecar().await
}

async fn revocation_curve(bench: &mut Bench) -> anyhow::Result<Vec<Point>> {
    eprintln!("bench: curve: revocation-set size");
    let pool = bench.hit_pool.clone();
    let mut points = Vec::new();
    for n in [0usize, 10_000, 100_000] {
        load_revocations(bench, n).await?;
        // A fresh Envoy gets the full set on its first control-stream message.
        bench.envoy_with(Filter::Ours).await?;
        points.push(hit_point(bench, n, &pool).await?);
    }
    load_revocations(bench, 0).await?;
    Ok(points)
}

async fn worker_curve(bench: &mut Bench) -> anyhow::Result<Vec<WorkerPoint>> {
    eprintln!("bench: curve: Envoy workers (unpinned: Envoy shares both cores with the load)");
    let (cpus, concurrency) = (bench.stack.opts.envoy_cpus.take(), bench.stack.opts.concurrency);
    let pool = bench.hit_pool.clone();
    let mut points = Vec::new();
    for workers in [1u32, 2] {
        bench.stack.opts.concurrency = workers;
        let mut rps = [0.0; 2];
        for (i, filter) in [Filter::None, Filter::Ours].into_iter().enumerate() {
            bench.envoy_with(filter).await?;
            rps[i] = hit_point(bench, workers as usize, &pool).await?.rps;
        }
        points.push(WorkerPoint { workers, bare_rps: rps[0], ours_rps: rps[1] });
    }
    bench.stack.opts.envoy_cpus = cpus;
    bench.stack.opts.concurrency = concurrency;
    Ok(points)
}

async fn memory_curve(bench: &mut Bench, points: &[usize]) -> anyhow::Result<Vec<MemoryPoint>> {
    let Some(&max) = points.iter().max() else { return Ok(Vec::new()) };
    eprintln!("bench: curve: memory against cached identities (signing {max} ES256 tokens)");
    let all = tokens::bearer_tokens(ES_KID, 10_000_000, max)?;
    let mut sorted = points.to_vec();
    sorted.sort_unstable();
    let mut envoy = Vec::new();
    // The filter refuses a cache above its bound; past it the cache evicts, which the curve shows.
    ours_with_cache(bench, max.min(FILTER_CACHE_BOUND)).await?;
    let mut done = 0;
    for &n in &sorted {
        let t = bench.target(Credentials::pool("authorization", &all[done..n])?);
        measure::visit_all(&t, &bench.settings, &all[done..n], "authorization").await?;
        done = n;
        envoy.push(procstat::rss_kib(bench.envoy_pid()?)? as f64 / 1024.0);
        eprintln!("bench: memory: {n} identities, Envoy {:.1} MiB", envoy.last().copied().unwrap_or(0.0));
    }
    bench.envoy_with(Filter::ExtAuthz).await?;
    let sidecar = bench.stack.sidecar_pid().ok_or_else(|| anyhow::anyhow!("sidecar is not running"))?;
    let mut result = Vec::new();
    done = 0;
    for (&n, envoy_rss_mib) in sorted.iter().zip(envoy) {
        let t = bench.target(Credentials::pool("authorization", &all[done..n])?);
        measure::visit_all(&t, &bench.settings, &all[done..n], "authorization").await?;
        done = n;
        let sidecar_rss_mib = procstat::rss_kib(sidecar)? as f64 / 1024.0;
        eprintln!("bench: memory: {n} identities, sidecar {sidecar_rss_mib:.1} MiB");
        result.push(MemoryPoint { identities: n, envoy_rss_mib, sidecar_rss_mib });
    }
    Ok(result)
}
