//! The soak run (`bench/soak.sh`): the shipped gateway (our filter with the audit trail, so
//! Envoy, the sidecar's access-log service and Redis all work) held at half of its measured
//! saturation for a long time, with a mix of cached tokens and API keys (sidecar callouts).
//!
//! Required: no request fails or is dropped, and the resident memory of Envoy and of the
//! sidecar stays within `--soak-tolerance` (5%) of what it was after the warm-up, at every
//! reading. A leak of a few bytes per request shows as a steady climb over millions of
//! requests; the warm-up lets caches, the wasm VM's heap and allocator arenas reach their size.

use std::time::{Duration, Instant};

use authz_e2e::auth_standin::DEMO_API_KEYS;
use serde::Serialize;

use crate::loadgen::{self, Credentials};
use crate::procstat;
use crate::{Bench, VARIANTS};

/// What the soak is asked to do.
pub struct SoakSettings {
    pub minutes: f64,
    pub warmup: Duration,
    pub sample: Duration,
    /// Allowed change of resident memory from the post-warm-up reading, in percent.
    pub tolerance_pct: f64,
    /// One request in this many carries an API key instead of a token.
    pub api_key_every: usize,
}

/// One reading, at the end of a measured interval.
#[derive(Debug, Serialize)]
pub struct Sample {
    pub at_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub dropped: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub envoy_rss_mib: f64,
    pub sidecar_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct SoakReport {
    pub command: String,
    pub machine: String,
    pub saturation_rps: f64,
    pub rate: f64,
    pub minutes: f64,
    pub warmup_s: f64,
    pub tolerance_pct: f64,
    pub baseline_envoy_rss_mib: f64,
    pub baseline_sidecar_rss_mib: f64,
    /// The largest change from the baseline at any reading, in percent (signed).
    pub envoy_max_drift_pct: f64,
    pub sidecar_max_drift_pct: f64,
    pub requests: u64,
    pub errors: u64,
    pub dropped: u64,
    pub samples: Vec<Sample>,
    pub passed: bool,
}

fn mib(pid: u32) -> anyhow::Result<f64> {
    Ok(procstat::rss_kib(pid)? as f64 / 1024.0)
}

/// The reading furthest from `baseline`, as a signed percentage.
fn max_drift(baseline: f64, readings: impl Iterator<Item = f64>) -> f64 {
    readings.map(|r| (r - baseline) / baseline * 100.0).fold(0.0, |a: f64, d| if d.abs() > a.abs() { d } else { a })
}

pub async fn run(bench: &mut Bench, cfg: &SoakSettings) -> anyhow::Result<SoakReport> {
    let variant = VARIANTS.iter().find(|v| v.id == "d").ok_or_else(|| anyhow::anyhow!("variant d missing"))?;
    bench.prepare(variant).await?;
    let keys: Vec<&str> = DEMO_API_KEYS.iter().map(|(k, _)| *k).collect();
    let mut pairs = Vec::new();
    for (i, token) in bench.hit_pool.iter().enumerate() {
        pairs.push(("authorization", token.as_str()));
        if i % cfg.api_key_every.max(1) == 0 {
            pairs.push(("x-api-key", keys[i % keys.len()]));
        }
    }
    let target = bench.target(Credentials::mixed(pairs)?);
    let (envoy, sidecar) =
        (bench.envoy_pid()?, bench.stack.sidecar_pid().ok_or_else(|| anyhow::anyhow!("sidecar not running"))?);

    let sat = loadgen::closed_loop(&target, bench.settings.connections, Duration::from_secs(10)).await?;
    anyhow::ensure!(sat.errors == 0, "{} errors while measuring saturation", sat.errors);
    let rate = sat.rps() / 2.0;
    eprintln!("soak: saturation {:.0} req/s; holding {rate:.0} req/s", sat.rps());

    let conns = bench.settings.open_connections;
    let warm = loadgen::open_loop(&target, conns, rate, cfg.warmup).await?;
    anyhow::ensure!(warm.errors == 0, "{} errors during the warm-up", warm.errors);
    let (base_envoy, base_sidecar) = (mib(envoy)?, mib(sidecar)?);
    eprintln!("soak: after the warm-up Envoy {base_envoy:.1} MiB, sidecar {base_sidecar:.1} MiB");

    let start = Instant::now();
    let total = Duration::from_secs_f64(cfg.minutes * 60.0);
    let mut samples = Vec::new();
    while start.elapsed() < total {
        let left = total.saturating_sub(start.elapsed());
        let r = loadgen::open_loop(&target, conns, rate, cfg.sample.min(left).max(Duration::from_secs(1))).await?;
        let s = Sample {
            at_s: start.elapsed().as_secs_f64(),
            requests: r.ok + r.errors,
            errors: r.errors,
            dropped: r.dropped,
            p50_ms: r.percentile_ms(0.5),
            p99_ms: r.percentile_ms(0.99),
            envoy_rss_mib: mib(envoy)?,
            sidecar_rss_mib: mib(sidecar)?,
        };
        eprintln!(
            "soak: {:>5.0} s  {} requests, {} errors, {} dropped, p99 {:.2} ms, Envoy {:.1} MiB, sidecar {:.1} MiB",
            s.at_s, s.requests, s.errors, s.dropped, s.p99_ms, s.envoy_rss_mib, s.sidecar_rss_mib
        );
        samples.push(s);
    }
    let envoy_drift = max_drift(base_envoy, samples.iter().map(|s| s.envoy_rss_mib));
    let sidecar_drift = max_drift(base_sidecar, samples.iter().map(|s| s.sidecar_rss_mib));
    let (requests, errors, dropped) =
        samples.iter().fold((0, 0, 0), |(n, e, d), s| (n + s.requests, e + s.errors, d + s.dropped));
    let passed = errors == 0
        && dropped == 0
        && envoy_drift.abs() <= cfg.tolerance_pct
        && sidecar_drift.abs() <= cfg.tolerance_pct;
    Ok(SoakReport {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: crate::report::machine(),
        saturation_rps: sat.rps(),
        rate,
        minutes: cfg.minutes,
        warmup_s: cfg.warmup.as_secs_f64(),
        tolerance_pct: cfg.tolerance_pct,
        baseline_envoy_rss_mib: base_envoy,
        baseline_sidecar_rss_mib: base_sidecar,
        envoy_max_drift_pct: envoy_drift,
        sidecar_max_drift_pct: sidecar_drift,
        requests,
        errors,
        dropped,
        samples,
        passed,
    })
}

/// The report as Markdown.
pub fn markdown(r: &SoakReport) -> String {
    let mut md = format!(
        "# Soak run\n\n`{}`\n\n{}\n\n{} at {:.0} req/s (half of the measured {:.0}) for {:.1} minutes after a {:.0} s \
         warm-up: {} requests, {} errors, {} dropped.\n\n\
         Resident memory after the warm-up: Envoy {:.1} MiB, sidecar {:.1} MiB; largest change at any \
         reading: Envoy {:+.2}%, sidecar {:+.2}% (allowed ±{:.0}%).\n\n",
        r.command,
        r.machine,
        if r.passed { "**Passed**" } else { "**FAILED**" },
        r.rate,
        r.saturation_rps,
        r.minutes,
        r.warmup_s,
        r.requests,
        r.errors,
        r.dropped,
        r.baseline_envoy_rss_mib,
        r.baseline_sidecar_rss_mib,
        r.envoy_max_drift_pct,
        r.sidecar_max_drift_pct,
        r.tolerance_pct,
    );
    md.push_str(
        "| at (s) | requests | errors | dropped | p50 (ms) | p99 (ms) | Envoy RSS (MiB) | sidecar RSS (MiB) |\n",
    );
    md.push_str("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for s in &r.samples {
        md.push_str(&format!(
            "| {:.0} | {} | {} | {} | {:.2} | {:.2} | {:.1} | {:.1} |\n",
            s.at_s, s.requests, s.errors, s.dropped, s.p50_ms, s.p99_ms, s.envoy_rss_mib, s.sidecar_rss_mib
        ));
    }
    md
}

/// Writes `soak.json` and `soak.md` under `out`.
pub fn write(r: &SoakReport, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("soak.json"), serde_json::to_string_pretty(r)?)?;
    std::fs::write(out.join("soak.md"), markdown(r))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drift_is_the_largest_change_either_way() {
        assert_eq!(max_drift(100.0, [101.0, 96.0, 103.0].into_iter()), -4.0);
        assert_eq!(max_drift(100.0, std::iter::empty()), 0.0);
    }
}
