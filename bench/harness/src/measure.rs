//! One measured configuration: restart Envoy with it, warm it, saturate it (closed loop) while
//! reading CPU time of Envoy and the sidecar, then hold fixed rates (open loop) for latency.

use std::time::Duration;

use serde::Serialize;

use crate::loadgen::{self, Credentials, RunResult, Target};
use crate::procstat::{self, CpuSample};

/// Load settings shared by every measurement of a run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub warmup: Duration,
    pub duration: Duration,
    pub connections: usize,
    pub open_connections: usize,
    /// Repetitions of each measurement (the median is kept).
    pub rounds: usize,
}

/// Latency at one fixed rate.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The rate was held: every due request was sent and answered in time.
    pub held: bool,
    pub errors: u64,
    /// The sidecar's own `Check` time over the run (upper bounds of the histogram buckets
    /// holding the 50th and 99th percentiles), for variants that call it.
    pub sidecar_check_p50_ms: Option<f64>,
    pub sidecar_check_p99_ms: Option<f64>,
    pub sidecar_checks: u64,
}

/// Cumulative bucket counts of `authz_check_duration_seconds` (upper bound, count).
async fn check_histogram(client: &reqwest::Client, metrics_url: &str) -> anyhow::Result<Vec<(f64, u64)>> {
    let text = client.get(metrics_url).send().await?.text().await?;
    let mut buckets = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("authz_check_duration_seconds_bucket{le=\"") else { continue };
        let Some((le, count)) = rest.split_once("\"} ") else { continue };
        let le = if le == "+Inf" { f64::INFINITY } else { le.parse()? };
        buckets.push((le, count.trim().parse()?));
    }
    Ok(buckets)
}

/// The upper bound of the bucket holding quantile `q` of the observations between two readings.
fn bucket_quantile(before: &[(f64, u64)], after: &[(f64, u64)], q: f64) -> Option<f64> {
    let delta: Vec<(f64, u64)> = after
        .iter()
        .map(|&(le, n)| (le, n.saturating_sub(before.iter().find(|(l, _)| *l == le).map_or(0, |(_, b)| *b))))
        .collect();
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = (q * total as f64).ceil() as u64;
    delta.iter().find(|(_, n)| *n >= rank).map(|(le, _)| *le)
}

/// Saturation numbers of one configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Saturation {
    pub rps: f64,
    pub requests: u64,
    pub errors: u64,
    pub envoy_cpu_us_per_req: f64,
    pub sidecar_cpu_us_per_req: f64,
    /// Envoy's CPU use during the run, in cores (1.0 = one core busy all the time).
    pub envoy_cores: f64,
    pub envoy_rss_mib: f64,
    pub sidecar_rss_mib: f64,
    /// The credentials ran out before the end of the run (its rate is still exact).
    pub exhausted: bool,
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Closed-loop saturation with CPU and memory readings.
pub async fn saturate(
    target: &Target,
    settings: &Settings,
    envoy: u32,
    sidecar: Option<u32>,
) -> anyhow::Result<Saturation> {
    let pids: Vec<u32> = std::iter::once(envoy).chain(sidecar).collect();
    let before = CpuSample::take(&pids)?;
    let run = loadgen::closed_loop(target, settings.connections, settings.duration).await?;
    let envoy_ns = before.since(envoy)?;
    let sidecar_ns = match sidecar {
        Some(p) => before.since(p)?,
        None => 0,
    };
    let n = (run.ok + run.errors).max(1) as f64;
    Ok(Saturation {
        rps: run.rps(),
        requests: run.ok,
        errors: run.errors,
        envoy_cpu_us_per_req: envoy_ns as f64 / 1000.0 / n,
        sidecar_cpu_us_per_req: sidecar_ns as f64 / 1000.0 / n,
        envoy_cores: envoy_ns as f64 / 1e9 / run.elapsed.as_secs_f64(),
        envoy_rss_mib: mib(procstat::rss_kib(envoy)?),
        sidecar_rss_mib: match sidecar {
            Some(p) => mib(procstat::rss_kib(p)?),
            None => 0.0,
        },
        exhausted: run.exhausted,
    })
}

/// Open-loop latency at `rate`; with `sidecar_metrics` (its `/metrics` URL), also the
/// sidecar's own `Check` time over the run.
pub async fn latency(
    target: &Target,
    settings: &Settings,
    rate: f64,
    sidecar_metrics: Option<(&reqwest::Client, &str)>,
) -> anyhow::Result<Latency> {
    let before = match sidecar_metrics {
        Some((c, url)) => check_histogram(c, url).await?,
        None => Vec::new(),
    };
    let run: RunResult = loadgen::open_loop(target, settings.open_connections, rate, settings.duration).await?;
    let after = match sidecar_metrics {
        Some((c, url)) => check_histogram(c, url).await?,
        None => Vec::new(),
    };
    let ms = |q| bucket_quantile(&before, &after, q).map(|s| s * 1000.0);
    let checks = after.last().map_or(0, |a| a.1).saturating_sub(before.last().map_or(0, |b| b.1));
    let expected = rate * settings.duration.as_secs_f64();
    Ok(Latency {
        sidecar_check_p50_ms: ms(0.50),
        sidecar_check_p99_ms: ms(0.99),
        sidecar_checks: checks,
        rate,
        p50_ms: run.percentile_ms(0.50),
        p99_ms: run.percentile_ms(0.99),
        held: run.dropped == 0 && !run.exhausted && (run.ok + run.errors) as f64 >= expected * 0.98,
        errors: run.errors,
    })
}

/// Warms connections, JIT and caches: a closed-loop run whose numbers are discarded, which
/// must succeed (a misconfigured variant would otherwise be measured as fast failures).
pub async fn warm(target: &Target, settings: &Settings) -> anyhow::Result<()> {
    let run = loadgen::closed_loop(target, settings.connections, settings.warmup).await?;
    anyhow::ensure!(
        run.errors == 0 && run.ok > 0,
        "warm-up of {} failed: {} ok, {} errors (is the variant refusing the load?)",
        target.path,
        run.ok,
        run.errors
    );
    Ok(())
}

/// Visits every credential of a pool once, so every identity is cached.
pub async fn visit_all(target: &Target, settings: &Settings, values: &[String], header: &str) -> anyhow::Result<()> {
    let once = Target { credentials: Credentials::unique(header, values)?, ..target.clone() };
    let run = loadgen::closed_loop(&once, settings.connections, Duration::from_secs(3600)).await?;
    anyhow::ensure!(run.errors == 0, "{} of {} credentials refused while warming the cache", run.errors, values.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_quantiles_of_a_difference() {
        let before = [(0.001, 10), (0.01, 10), (f64::INFINITY, 10)];
        let after = [(0.001, 108), (0.01, 109), (f64::INFINITY, 110)];
        assert_eq!(bucket_quantile(&before, &after, 0.5), Some(0.001));
        assert_eq!(bucket_quantile(&before, &after, 0.99), Some(0.01));
        assert_eq!(bucket_quantile(&before, &before, 0.5), None);
    }
}
