//! Anonymous garbage against legitimate traffic (`bench/flood.sh`).
//!
//! Starts the whole stack (wasm filter) and runs legitimate clients (cached JWTs and known API
//! keys, from 127.0.0.1) alone, then side by side with a garbage flood from another client
//! address (127.0.0.2): random API keys and JWTs with random `kid`s. Reports, per phase, the
//! legitimate requests/s and latency, the flood's requests/s and answers, and how often the
//! auth service was asked to introspect. Run three times: with the shipped bounds
//! (introspection budget, per-client failure limit, the filter's hold-off on unknown keys),
//! with an API-key format added (junk keys refused in the filter), and with the sidecar's
//! bounds lifted, which shows the amplification they remove.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_kid, user_claims};
use clap::Parser;
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Cli {
    /// Seconds of each phase.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Legitimate client connections.
    #[arg(long, default_value_t = 8)]
    legit: usize,
    /// Flood connections.
    #[arg(long, default_value_t = 16)]
    flood: usize,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "bench/results/flood.md")]
    out: std::path::PathBuf,
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

struct Phase {
    legit_rps: f64,
    legit_p50_ms: f64,
    legit_p99_ms: f64,
    legit_non_200: u64,
    flood_rps: f64,
    flood_statuses: BTreeMap<u16, u64>,
    introspections_per_s: f64,
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

/// Keeps `conns` clients busy until `stop`, each taking the next credential from `creds`.
fn spawn_load(
    url: String,
    conns: usize,
    local: IpAddr,
    creds: Arc<Vec<(String, String)>>,
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..conns)
        .map(|c| {
            let (url, creds, stop, tally) = (url.clone(), Arc::clone(&creds), Arc::clone(&stop), Arc::clone(&tally));
            tokio::spawn(async move {
                let Ok(client) = reqwest::Client::builder()
                    .local_address(local)
                    .pool_max_idle_per_host(1)
                    .timeout(Duration::from_secs(5))
                    .build()
                else {
                    return;
                };
                let mut local_tally = Tally::default();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    let (name, value) = &creds[i % creds.len()];
                    i += conns;
                    let t = Instant::now();
                    match client.get(&url).header(name.as_str(), value.as_str()).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            let _ = r.bytes().await;
                            local_tally.latencies_us.push(t.elapsed().as_micros() as u64);
                            *local_tally.statuses.entry(status).or_default() += 1;
                        }
                        Err(_) => local_tally.errors += 1,
                    }
                }
                let mut all = tally.lock().await;
                all.latencies_us.extend(local_tally.latencies_us);
                for (s, n) in local_tally.statuses {
                    *all.statuses.entry(s).or_default() += n;
                }
                all.errors += local_tally.errors;
            })
        })
        .collect()
}

async fn phase(
    stack: &Stack,
    cli: &Cli,
    legit: &Arc<Vec<(String, String)>>,
    flood: Option<&Arc<Vec<(String, String)>>>,
) -> Phase {
    let url = stack.gateway_url("/api/tools/bench");
    let stop = Arc::new(AtomicBool::new(false));
    let legit_tally = Arc::new(Mutex::new(Tally::default()));
    let flood_tally = Arc::new(Mutex::new(Tally::default()));
    let before = stack.auth.state.calls.introspect.load(Ordering::Relaxed);
    let mut tasks = spawn_load(
        url.clone(),
        cli.legit,
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)),
        Arc::clone(legit),
        Arc::clone(&stop),
        Arc::clone(&legit_tally),
    );
    if let Some(f) = flood {
        tasks.extend(spawn_load(
            url,
            cli.flood,
            IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
            Arc::clone(f),
            Arc::clone(&stop),
            Arc::clone(&flood_tally),
        ));
    }
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(cli.duration)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let secs = started.elapsed().as_secs_f64();
    let introspections = stack.auth.state.calls.introspect.load(Ordering::Relaxed) - before;
    let mut legit_tally = legit_tally.lock().await;
    legit_tally.latencies_us.sort_unstable();
    let flood_tally = flood_tally.lock().await;
    let ok = legit_tally.statuses.get(&200).copied().unwrap_or(0);
    Phase {
        legit_rps: legit_tally.latencies_us.len() as f64 / secs,
        legit_p50_ms: percentile_ms(&legit_tally.latencies_us, 0.5),
        legit_p99_ms: percentile_ms(&legit_tally.latencies_us, 0.99),
        legit_non_200: legit_tally.latencies_us.len() as u64 - ok + legit_tally.errors,
        flood_rps: flood_tally.latencies_us.len() as f64 / secs,
        flood_statuses: flood_tally.statuses.clone(),
        introspections_per_s: introspections as f64 / secs,
    }
}

/// Random API keys and HS256 tokens with random `kid`s, alternating.
fn garbage(n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        if i % 2 == 0 {
            out.push(("x-api-key".into(), format!("junk-{}", uuid::Uuid::new_v4())));
        } else {
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some(uuid::Uuid::new_v4().to_string());
            let claims = user_claims("u-flood", "f@x.example", &["admin"]);
            let t = jsonwebtoken::encode(&h, &claims, &jsonwebtoken::EncodingKey::from_secret(b"guess"))?;
            out.push(("authorization".into(), format!("Bearer {t}")));
        }
    }
    Ok(out)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    authz_core::crypto::ensure_provider();
    let mut legit = Vec::new();
    for i in 0..100 {
        let claims = user_claims(&format!("u-{i}"), "u@lab.example", &["user"]);
        legit.push(("authorization".to_string(), format!("Bearer {}", sign_kid(&claims, DEV_KID)?)));
        legit
            .push(("x-api-key".to_string(), if i % 2 == 0 { "demo-api-key-alice" } else { "demo-api-key-bob" }.into()));
    }
    let legit = Arc::new(legit);
    let flood = Arc::new(garbage(200_000)?);
    let format = "{prefix: demo-api-key-, maxLength: 64}";
    let configs = [
        ("shipped bounds", String::new()),
        (
            "shipped bounds + apiKeyFormat",
            format!("apiKeys:\n  format: {format}\n"),
        ),
        (
            "sidecar bounds lifted",
            "apiKeys:\n  maxConcurrentIntrospections: 100000\n  introspectionRate: 1000000\n  introspectionBurst: 1000000\n\
             failedCredentials:\n  perClient: 0\n"
                .to_string(),
        ),
    ];
    let mut md = String::from(
        "# Anonymous garbage against legitimate traffic\n\n\
         `bench/flood.sh` (tests/src/bin/flood-bench.rs): the whole stack with the wasm filter (Envoy \
         `--concurrency 2`), legitimate clients (cached JWTs and two known API keys, from 127.0.0.1) alone, then \
         next to a flood of random API keys and random-`kid` JWTs from 127.0.0.2. One run; the machine has \
         2 cores shared by Envoy, the sidecar, the auth stand-in and both load generators.\n\n\
         | sidecar | phase | legit req/s | legit p50 ms | legit p99 ms | legit non-200 | flood req/s | flood answers | introspections/s at the auth service |\n\
         |---|---|---|---|---|---|---|---|---|\n",
    );
    for (name, extra) in configs {
        let mut opts = Options::test(Mode::Wasm)?;
        opts.sidecar_extra = extra;
        let stack = Stack::start(opts).await?;
        // Warm: every legitimate credential once (the API keys are then cached).
        for (h, v) in legit.iter() {
            let _ = stack.client.get(stack.gateway_url("/api/tools/warm")).header(h.as_str(), v.as_str()).send().await;
        }
        for (label, flood) in [("legit only", None), ("legit + flood", Some(&flood))] {
            let p = phase(&stack, &cli, &legit, flood).await;
            let answers: Vec<String> = p.flood_statuses.iter().map(|(s, n)| format!("{s}: {n}")).collect();
            let row = format!(
                "| {name} | {label} | {:.0} | {:.2} | {:.2} | {} | {:.0} | {} | {:.1} |\n",
                p.legit_rps,
                p.legit_p50_ms,
                p.legit_p99_ms,
                p.legit_non_200,
                p.flood_rps,
                if answers.is_empty() { "-".into() } else { answers.join(", ") },
                p.introspections_per_s
            );
            print!("{row}");
            md.push_str(&row);
        }
        drop(stack);
    }
    md.push_str(&format!(
        "\nCommand: `bench/flood.sh --duration {} --legit {} --flood {}`.\n",
        cli.duration, cli.legit, cli.flood
    ));
    if let Some(dir) = cli.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&cli.out, md)?;
    println!("wrote {}", cli.out.display());
    Ok(())
}
