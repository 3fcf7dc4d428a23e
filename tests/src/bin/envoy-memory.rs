//! Where Envoy's resident memory goes with the filter loaded (`bench/envoy-memory.sh`): the
//! stack on ephemeral ports, idle after a few requests, its Envoy's RSS split by mapping kind
//! (`/proc/<pid>/smaps`) and the allocator's own account (`/memory/tcmalloc` on Envoy's admin).
//!
//! Run it twice, once with `--module` naming another module (the benchmark's no-op filter, say)
//! loaded in our filter's place, to see what our module and its VMs cost; `--concurrency` gives
//! the cost of one more worker's VM.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use authz_e2e::stack::{Mode, Options, Stack};
use clap::Parser;

#[derive(Debug, Parser)]
struct Cli {
    /// Envoy workers.
    #[arg(long, default_value_t = 1)]
    concurrency: u32,
    /// Another module in our filter's place (same configuration and VM settings). The stack
    /// then does not wait for our filter's control stream, which another module never opens.
    #[arg(long)]
    module: Option<PathBuf>,
    /// Seconds to stay idle before reading (Envoy finishes compiling and settles).
    #[arg(long, default_value_t = 3)]
    settle: u64,
}

/// Resident KiB of Envoy's mappings, by kind: its own binary (by permission), anonymous
/// read-write (the allocator's heap and V8's), anonymous executable (compiled wasm), and the rest.
fn rss_by_kind(pid: u32) -> anyhow::Result<BTreeMap<String, u64>> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).context("reading smaps")?;
    let mut kinds = BTreeMap::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let perms = fields.next().unwrap_or_default();
            let path = fields.nth(3).unwrap_or_default();
            current = match path {
                p if p.ends_with("/envoy") => format!("envoy binary {perms}"),
                "" if perms.contains('x') => "anonymous, executable (compiled wasm)".to_string(),
                "" if perms.starts_with("rw") => "anonymous, read-write (heap, V8)".to_string(),
                _ => "other".to_string(),
            };
        } else if first == "Rss:" {
            let kib: u64 = fields.next().unwrap_or("0").parse().unwrap_or(0);
            *kinds.entry(current.clone()).or_default() += kib;
        }
    }
    Ok(kinds)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut opts = Options::test(Mode::Wasm)?;
    opts.concurrency = cli.concurrency;
    if let Some(module) = &cli.module {
        let gateway = std::fs::read_to_string(authz_e2e::paths::workspace().join("envoy/gateway.yaml"))?;
        let path = module.canonicalize().with_context(|| format!("{}", module.display()))?;
        opts.mode = Mode::Custom;
        opts.envoy_template = Some(
            gateway.replace("${WASM_PATH}", &path.display().to_string()).replace("root_id: authz", "root_id: other"),
        );
    }
    let stack = Stack::start(opts).await?;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        client.get(stack.gateway_url("/health")).send().await?;
    }
    tokio::time::sleep(Duration::from_secs(cli.settle)).await;
    let pid = stack.envoy_pid().context("Envoy is not running")?;
    let kinds = rss_by_kind(pid)?;
    let total: u64 = kinds.values().sum();
    println!("Envoy RSS with --concurrency {}: {:.1} MiB", cli.concurrency, total as f64 / 1024.0);
    for (kind, kib) in &kinds {
        println!("  {:>7.1} MiB  {kind}", *kib as f64 / 1024.0);
    }
    let admin = format!("http://127.0.0.1:{}", stack.ports.envoy_admin);
    let tcmalloc = client.get(format!("{admin}/memory/tcmalloc")).send().await?.text().await?;
    println!("tcmalloc (Envoy's /memory/tcmalloc):");
    for line in tcmalloc.lines().filter(|l| l.starts_with("MALLOC:") && l.contains("MiB")).take(12) {
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        println!("  {}", words.join(" "));
    }
    let vms = stack.envoy_stat("wasm.wasm_vm_count").await.context("no wasm.wasm_vm_count stat")?;
    println!("V8 VMs (wasm.wasm_vm_count): {vms}");
    Ok(())
}
