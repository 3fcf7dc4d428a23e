//! `make run`: the whole stack on 127.0.0.1 with the documented ports, and a demo to paste.
//!
//! Starts Redis (:6380), the auth stand-in (:8100), echo upstreams on the services' ports,
//! the sidecar (:9191 gRPC, :9192 admin) and Envoy (:8080, admin :9901). Ctrl-C stops all.

use authz_e2e::stack::{Mode, Options, Ports, Stack};

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Run the gateway stack locally with a demo")]
struct Cli {
    /// Use Envoy's native ext_authz filter instead of the wasm filter.
    #[arg(long)]
    ext_authz: bool,
    /// Envoy worker threads.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mode = if cli.ext_authz { Mode::ExtAuthz } else { Mode::Wasm };
    let mut opts = Options::test(mode)?;
    opts.concurrency = cli.concurrency;
    opts.ports = Ports::fixed();
    opts.fixed_upstream_ports = true;
    // The documented example policy (with its compute route) and small demo quotas.
    let policy: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(
        authz_e2e::paths::workspace().join("authz-sidecar/policy.example.yaml"),
    )?)?;
    opts.routes = serde_json::to_value(&policy["routes"])?;
    opts.sidecar_extra = "quota:\n  perUser: { gpus: 2, cpuCores: 8 }\n".into();
    let stack = Stack::start(opts).await?;
    let sidecar_cli =
        format!("{} --config {}", authz_e2e::paths::sidecar()?.display(), stack.sidecar_config_path().display());
    let gw = stack.gateway_url("");
    let auth = stack.auth.url();
    println!(
        r#"
Gateway stack is up ({mode:?}). Logs and configs: {dir}

  gateway        {gw}            envoy admin  http://127.0.0.1:{envoy_admin}
  sidecar gRPC   127.0.0.1:{grpc}        sidecar admin http://127.0.0.1:{sadmin}/metrics
  auth stand-in  {auth}       redis        127.0.0.1:{redis}

Try it (demo users: alice / alice-demo-pw (admin), bob / bob-demo-pw (user)):

  TOKEN=$(curl -s {auth}/auth/login -H 'content-type: application/json' \
      -d '{{"username":"alice","password":"alice-demo-pw"}}' | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
  curl -s {gw}/api/tools/list -H "authorization: Bearer $TOKEN" -H 'x-user-id: spoofed'
  curl -si {gw}/api/tools/list                      # 401, JSON body
  curl -s {gw}/api/tes/v1/tasks -H 'x-api-key: demo-api-key-bob'
  curl -si {gw}/auth/verify -H "authorization: Bearer $TOKEN"
  curl -s {gw}/health

Compute quota (a TES task asking for 1 GPU; alice may hold 2, the third is 403) and the audit trail:

  curl -s {gw}/api/tes/v1/tasks -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
      -d '{{"name":"demo","resources":{{"cpu_cores":2,"backend_parameters":{{"gpu":"1"}}}},"executors":[]}}'
  {sidecar_cli} quota show --user u-alice
  {sidecar_cli} audit tail --count 5

Ctrl-C stops everything."#,
        dir = stack.dir().display(),
        envoy_admin = stack.ports.envoy_admin,
        grpc = stack.ports.sidecar_grpc,
        sadmin = stack.ports.sidecar_admin,
        redis = stack.ports.redis,
    );
    // Ctrl-C or a termination signal: drop the stack, which kills every process it started.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    println!("\nstopping…");
    drop(stack);
    Ok(())
}
