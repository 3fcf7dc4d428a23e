//! The side-by-side gateway benchmark (`bench/gateway.sh`).
//!
//! One run starts Redis, the auth stand-in, the sidecar (release build) and a minimal upstream,
//! then, for each variant in turn, an Envoy (`--concurrency 1`, pinned to the first core) with
//! that variant's filter in front of the same listener and routes. The load generator and
//! everything else run on the second core. Per variant it reports saturated requests/s (closed
//! loop), latency at 25% and 50% of the no-filter saturation (open loop), CPU per request of
//! Envoy and the sidecar, and resident memory. `--curves` adds how the hit path scales with
//! tokens, policy size, revocations and workers, and memory against cached identities.
//!
//! Results go to `<out>/gateway.json` and `<out>/gateway.md`; `bench/chart.py` draws the PNG.

mod curves;
mod loadgen;
mod measure;
mod native_chain;
mod procstat;
mod report;
mod soak;
mod tokens;
mod upstream;
mod variants;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use authz_e2e::auth_standin::DEMO_API_KEYS;
use authz_e2e::paths;
use authz_e2e::stack::{Mode, Options, Stack};
use clap::Parser;
use serde::Serialize;

use loadgen::{Credentials, Target};
use measure::{Latency, Saturation, Settings};
use variants::{Load, VARIANTS, Variant};

#[derive(Debug, Parser)]
#[command(about = "Side-by-side gateway benchmark: bare Envoy, jwt_authn, no-op wasm, our filter, ext_authz")]
struct Cli {
    /// Seconds of each measured phase (saturation, each fixed rate).
    #[arg(long, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of warm-up before each variant's measurements.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Keep-alive connections of the closed-loop (saturation) runs.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Connections available to the open-loop (fixed-rate) runs.
    #[arg(long, default_value_t = 64)]
    open_connections: usize,
    /// Distinct tokens of the hit-path pool (fits every cache).
    #[arg(long, default_value_t = 1000)]
    pool: usize,
    /// New tokens signed for the miss path's saturation run.
    #[arg(long, default_value_t = 30_000)]
    miss_tokens: usize,
    /// Rounds of every measurement (saturation rounds interleave the variants; latency and
    /// curve points repeat in place); the median round is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Variants to run (ids, comma-separated); `a` always runs, it sets the fixed rates.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Another build of our filter, run as variant `d-base` next to (d) in the same rounds
    /// (`--only d,d-base --baseline-wasm old.wasm`): a change's before and after in one run.
    #[arg(long)]
    baseline_wasm: Option<PathBuf>,
    /// Skip the fixed-rate latency runs (saturation and CPU per request only).
    #[arg(long)]
    no_latency: bool,
    /// Also measure the scaling curves (several minutes more).
    #[arg(long)]
    curves: bool,
    /// Cached identities at which memory is read (curves).
    /// The default stops at 300000: past both caches' bounds (filter 200000 per worker,
    /// sidecar memory 100000), where memory must stay flat.
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,300000")]
    memory_points: Vec<usize>,
    /// Where the results go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Instead of the comparison, the soak run: the shipped gateway at half of its saturation
    /// for this many minutes (`bench/soak.sh`), memory read every `--soak-sample` seconds.
    #[arg(long)]
    soak_minutes: Option<f64>,
    /// Seconds at the soak's rate before the memory baseline is read.
    #[arg(long, default_value_t = 60.0)]
    soak_warmup: f64,
    /// Seconds between the soak's readings.
    #[arg(long, default_value_t = 30.0)]
    soak_sample: f64,
    /// Allowed change of resident memory from the baseline, in percent.
    #[arg(long, default_value_t = 5.0)]
    soak_tolerance: f64,
    /// In the soak's mix, one API key (a sidecar callout) after every this many tokens.
    #[arg(long, default_value_t = 10)]
    soak_api_key_every: usize,
}

/// One variant's results.
#[derive(Debug, Serialize)]
pub struct VariantResult {
    pub id: &'static str,
    pub name: &'static str,
    /// The round with the median requests/s.
    pub saturation: Saturation,
    /// Requests/s of every round.
    pub rounds_rps: Vec<f64>,
    pub ratio_to_a: f64,
    pub latency: Vec<Latency>,
}

/// The whole run, as written to `gateway.json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub machine: String,
    pub envoy_cpu: Option<usize>,
    pub load_cpu: Option<usize>,
    pub variants: Vec<VariantResult>,
    pub curves: Option<curves::Curves>,
}

/// Shared state of a run.
pub struct Bench {
    pub stack: Stack,
    pub settings: Settings,
    pub gateway_template: String,
    /// The module of variant `d-base`.
    pub baseline_wasm: Option<PathBuf>,
    pub jwks: String,
    pub noop_wasm: PathBuf,
    pub hit_pool: Vec<String>,
    pub path: String,
}

impl Bench {
    pub fn target(&self, credentials: std::sync::Arc<Credentials>) -> Target {
        Target {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], self.stack.ports.gateway)),
            path: self.path.clone(),
            credentials,
        }
    }

    /// Restarts Envoy with `filter` in front of the router.
    pub async fn envoy_with(&mut self, filter: variants::Filter) -> anyhow::Result<()> {
        self.stack.stop_envoy().await?;
        let (mode, template) = variants::envoy_setup(filter, &self.gateway_template, &self.jwks, &self.noop_wasm)?;
        self.stack.opts.mode = mode;
        self.stack.opts.envoy_template = template;
        self.stack.opts.var_overrides.retain(|(k, _)| *k != "WASM_PATH");
        if filter == variants::Filter::OursBaseline {
            let path = self.baseline_wasm.as_ref().ok_or_else(|| anyhow::anyhow!("d-base needs --baseline-wasm"))?;
            self.stack.opts.var_overrides.push(("WASM_PATH", path.display().to_string()));
        }
        // The variant's own filter settings replace the previous variant's; other overrides
        // (the memory curve's cache size) are the caller's and stay.
        let mut settings = match self.stack.opts.filter_config_override.take() {
            Some(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        for key in variants::VARIANT_FILTER_KEYS {
            settings.remove(*key);
        }
        settings.extend(variants::filter_settings(filter));
        self.stack.opts.filter_config_override = (!settings.is_empty()).then_some(serde_json::Value::Object(settings));
        self.stack.start_envoy().await
    }

    pub fn envoy_pid(&self) -> anyhow::Result<u32> {
        self.stack.envoy_pid().ok_or_else(|| anyhow::anyhow!("Envoy is not running"))
    }

    /// The sidecar's pid when the variant uses it (CPU per request is only read for those).
    fn sidecar_pid_for(&self, v: &Variant) -> Option<u32> {
        let uses = matches!(
            v.filter,
            variants::Filter::Ours
                | variants::Filter::OursNoAudit
                | variants::Filter::OursRecordOnly
                | variants::Filter::ExtAuthz
        );
        if uses { self.stack.sidecar_pid() } else { None }
    }

    /// Credentials for `v`'s load; the miss path signs `n` new tokens numbered from `first`.
    fn credentials(&self, v: &Variant, n: usize, first: usize) -> anyhow::Result<Arc<Credentials>> {
        match v.load {
            Load::TokenPool => Credentials::pool("authorization", &self.hit_pool),
            Load::ApiKey => Credentials::pool("x-api-key", &[DEMO_API_KEYS[0].0.to_string()]),
            Load::UniqueTokens => Credentials::unique("authorization", &tokens::bearer_tokens("dev-1", first, n)?),
        }
    }

    /// Restarts Envoy for `v`, caches the pool's identities (where the variant caches) and
    /// warms up; the miss path warms on the pool, so its measured tokens stay unseen.
    async fn prepare(&mut self, v: &Variant) -> anyhow::Result<()> {
        self.envoy_with(v.filter).await?;
        let pool = Credentials::pool("authorization", &self.hit_pool)?;
        if v.load == Load::TokenPool {
            measure::visit_all(&self.target(Arc::clone(&pool)), &self.settings, &self.hit_pool, "authorization")
                .await?;
        }
        let warm = if v.load == Load::UniqueTokens { pool } else { self.credentials(v, 0, 0)? };
        measure::warm(&self.target(warm), &self.settings).await
    }

    /// One saturation round of `v`.
    async fn saturation(&mut self, v: &Variant, miss_tokens: usize, first: usize) -> anyhow::Result<Saturation> {
        self.prepare(v).await?;
        let target = self.target(self.credentials(v, miss_tokens, first)?);
        let s = measure::saturate(&target, &self.settings, self.envoy_pid()?, self.sidecar_pid_for(v)).await?;
        eprintln!(
            "bench: ({}) {:.0} req/s, Envoy {:.1} µs/req, sidecar {:.1} µs/req",
            v.id, s.rps, s.envoy_cpu_us_per_req, s.sidecar_cpu_us_per_req
        );
        Ok(s)
    }

    /// Open-loop latency of `v` at each rate.
    async fn latencies(&mut self, v: &Variant, rates: &[f64], mut first: usize) -> anyhow::Result<Vec<Latency>> {
        self.prepare(v).await?;
        let metrics_url = format!("http://127.0.0.1:{}/metrics", self.stack.ports.sidecar_admin);
        let sidecar = self.sidecar_pid_for(v).map(|_| (&self.stack.client, metrics_url.as_str()));
        let mut out = Vec::new();
        for &rate in rates {
            // Repeated like saturation; the run with the median p99 is kept.
            let mut runs = Vec::new();
            for _ in 0..self.settings.rounds {
                let n = (rate * self.settings.duration.as_secs_f64() * 1.05) as usize + 100;
                let target = self.target(self.credentials(v, n, first)?);
                runs.push(measure::latency(&target, &self.settings, rate, sidecar).await?);
                first += n;
            }
            runs.sort_by(|a, b| a.p99_ms.total_cmp(&b.p99_ms));
            let mid = runs.len() / 2;
            out.extend(runs.into_iter().nth(mid));
        }
        Ok(out)
    }
}

/// The round with the median requests/s (rounds alternate between variants, so a noisy
/// neighbour on this shared machine spreads over all of them instead of hitting one).
pub fn median(mut rounds: Vec<Saturation>) -> anyhow::Result<Saturation> {
    rounds.sort_by(|a, b| a.rps.total_cmp(&b.rps));
    let mid = rounds.len() / 2;
    rounds.into_iter().nth(mid).ok_or_else(|| anyhow::anyhow!("no rounds"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    authz_core::crypto::ensure_provider();
    // Envoy on the first core; the load generator, upstream, sidecar and Redis on the second
    // (threads and child processes inherit this thread's pinning).
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (envoy_cpu, load_cpu) = match cores.as_slice() {
        [e, l, ..] => (Some(e.id), Some(*l)),
        _ => (None, None),
    };
    if let Some(core) = load_cpu {
        core_affinity::set_for_current(core);
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(run(cli, envoy_cpu, load_cpu.map(|c| c.id)))
}

async fn run(cli: Cli, envoy_cpu: Option<usize>, load_cpu: Option<usize>) -> anyhow::Result<()> {
    let settings = Settings {
        warmup: Duration::from_secs_f64(cli.warmup),
        duration: Duration::from_secs_f64(cli.duration),
        connections: cli.connections,
        open_connections: cli.open_connections,
        rounds: cli.rounds.max(1),
    };
    let upstream = upstream::spawn().await?;
    eprintln!("bench: signing {} RS256 tokens for the hit-path pool", cli.pool);
    let hit_pool = tokens::bearer_tokens("dev-1", 0, cli.pool)?;
    let mut opts = Options::test(Mode::Wasm)?;
    opts.concurrency = 1;
    opts.envoy_cpus = envoy_cpu.map(|c| c.to_string());
    opts.var_overrides =
        vec![("TOOLSERVER_HOST", upstream.ip().to_string()), ("TOOLSERVER_PORT", upstream.port().to_string())];
    let stack = Stack::start(opts).await?;
    let jwks = {
        let all: serde_json::Value =
            stack.client.get(format!("{}/.well-known/jwks.json", stack.auth.url())).send().await?.json().await?;
        let keys: Vec<&serde_json::Value> =
            all["keys"].as_array().into_iter().flatten().filter(|k| k["kid"] == "dev-1").collect();
        serde_json::json!({ "keys": keys }).to_string()
    };
    let filter_wasm = paths::filter_wasm()?;
    let noop_wasm = filter_wasm.with_file_name("authz_bench_noop_filter.wasm");
    anyhow::ensure!(noop_wasm.exists(), "{} not found (bench/gateway.sh builds it)", noop_wasm.display());
    let mut bench = Bench {
        stack,
        settings,
        gateway_template: std::fs::read_to_string(paths::workspace().join("envoy/gateway.yaml"))?,
        baseline_wasm: cli.baseline_wasm.clone(),
        jwks,
        noop_wasm,
        hit_pool,
        path: "/api/tools/bench".into(),
    };

    if let Some(minutes) = cli.soak_minutes {
        let cfg = soak::SoakSettings {
            minutes,
            warmup: Duration::from_secs_f64(cli.soak_warmup),
            sample: Duration::from_secs_f64(cli.soak_sample),
            tolerance_pct: cli.soak_tolerance,
            api_key_every: cli.soak_api_key_every,
        };
        let report = soak::run(&mut bench, &cfg).await?;
        soak::write(&report, &cli.out)?;
        println!("{}", soak::markdown(&report));
        anyhow::ensure!(report.passed, "the soak run failed (see {}/soak.md)", cli.out.display());
        return Ok(());
    }

    let named = |v: &Variant| cli.only.iter().any(|o| o == v.id);
    let selected: Vec<&Variant> =
        VARIANTS.iter().filter(|v| v.id == "a" || named(v) || (cli.only.is_empty() && !v.diagnostic)).collect();
    // Saturation: every variant once per round, rounds one after the other.
    let mut rounds: Vec<Vec<Saturation>> = selected.iter().map(|_| Vec::new()).collect();
    let mut first = 1_000_000;
    for round in 0..cli.rounds.max(1) {
        eprintln!("bench: saturation round {} of {}", round + 1, cli.rounds.max(1));
        for (v, samples) in selected.iter().zip(rounds.iter_mut()) {
            samples.push(bench.saturation(v, cli.miss_tokens, first).await?);
            first += cli.miss_tokens;
        }
    }
    let mut results: Vec<VariantResult> = Vec::new();
    for (v, samples) in selected.iter().zip(rounds) {
        let all_rps = samples.iter().map(|s| s.rps).collect();
        results.push(VariantResult {
            id: v.id,
            name: v.name,
            saturation: median(samples)?,
            rounds_rps: all_rps,
            ratio_to_a: 0.0,
            latency: Vec::new(),
        });
    }
    let a_rps = results.first().map_or(1.0, |a| a.saturation.rps);
    let rates = [a_rps * 0.25, a_rps * 0.5];
    for (v, r) in selected.iter().zip(results.iter_mut()) {
        r.ratio_to_a = r.saturation.rps / a_rps.max(1e-9);
        if cli.no_latency {
            continue;
        }
        eprintln!("bench: ({}) latency at {:.0} and {:.0} req/s", v.id, rates[0], rates[1]);
        r.latency = bench.latencies(v, &rates, first).await?;
        first += 1_000_000;
    }
    let mut report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        machine: report::machine(),
        envoy_cpu,
        load_cpu,
        variants: results,
        curves: None,
    };
    // Written now and again after the curves, so a failing curve loses nothing measured.
    write_report(&report, &cli.out)?;
    if cli.curves {
        report.curves = Some(curves::run(&mut bench, &cli.memory_points).await?);
        write_report(&report, &cli.out)?;
    }
    println!("{}", report::markdown(&report));
    Ok(())
}

fn write_report(report: &Report, out: &std::path::Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("gateway.json"), serde_json::to_string_pretty(report)?)?;
    std::fs::write(out.join("gateway.md"), report::markdown(report))?;
    Ok(())
}
