//! The whole product running locally: Redis, the auth stand-in, echo upstreams, the sidecar
//! and Envoy (with the wasm filter, or with native ext_authz), on 127.0.0.1.
//!
//! Every process is started with `kill_on_drop`, and the stack's temporary folder (configs,
//! logs, Redis data) is removed on drop, so a failing test leaves nothing running. On a
//! start-up failure the error carries the tail of the failing process's log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::{Child, Command};

mod options;
mod ports;
pub(crate) mod process;
mod redis_server;

pub use options::{Mode, Options, SERVICES};
pub use ports::{Ports, free_port, pipe_address, tcp_address};
use process::{spawn_logged, wait_until};

use crate::auth_standin::{self, AuthStandin};
use crate::render::{render, yaml_string};
use crate::tokens::{AUDIENCE, DEV_JWT_SECRET, ISSUER};
use crate::{echo, paths};
use redis_server::redis_url_with;

pub struct Stack {
    pub opts: Options,
    pub ports: Ports,
    pub auth: AuthStandin,
    pub upstreams: Vec<(&'static str, SocketAddr)>,
    /// Every request the echo upstreams have received (with `Options::record_upstream`).
    pub seen: echo::SeenLog,
    pub client: reqwest::Client,
    dir: tempfile::TempDir,
    redis: Option<Child>,
    /// The Redis Cluster's ports and nodes (with `Options::redis_cluster`).
    pub cluster_ports: Vec<u16>,
    cluster_nodes: Vec<Child>,
    sidecar: Option<Child>,
    envoy: Option<Child>,
}

impl Drop for Stack {
    /// Sockets placed in /tmp for a long TMPDIR (`sidecar_socket`) are not in the stack folder
    /// that the drop of `dir` removes; a killed sidecar leaves its socket file behind.
    fn drop(&mut self) {
        for name in ["sidecar", "sidecar-replica"] {
            let socket = self.sidecar_socket(name);
            if !socket.starts_with(self.dir()) {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

impl Stack {
    pub async fn start(opts: Options) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("authz-stack-").tempdir()?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        let cluster_ports =
            if opts.redis_cluster { vec![opts.ports.redis, free_port()?, free_port()?] } else { Vec::new() };
        anyhow::ensure!(
            !(opts.redis_cluster && opts.redis_password.is_some()),
            "redis_password is for one Redis, not a cluster"
        );
        let redis_url = redis_url_with(opts.ports.redis, &cluster_ports, opts.redis_password.as_deref());
        let auth = auth_standin::spawn(SocketAddr::from(([127, 0, 0, 1], opts.ports.auth)), Some(&redis_url)).await?;
        let mut ports = opts.ports.clone();
        ports.auth = auth.addr.port();
        let mut upstreams = Vec::new();
        let seen = echo::SeenLog::default();
        for (_, name, port) in SERVICES {
            let port = if opts.fixed_upstream_ports { *port } else { 0 };
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            let record = opts.record_upstream.then(|| std::sync::Arc::clone(&seen));
            upstreams.push((*name, echo::spawn(name, addr, record).await?));
        }
        let mut stack = Self {
            opts,
            ports,
            auth,
            upstreams,
            seen,
            client,
            dir,
            redis: None,
            cluster_ports,
            cluster_nodes: Vec::new(),
            sidecar: None,
            envoy: None,
        };
        // The shipped policy's first three rules (`authz-sidecar/policy.example.yaml`), unless the
        // test's routes carry them already (the example policy itself), then the test's.
        let theirs: Vec<serde_json::Value> = stack.opts.routes.as_array().into_iter().flatten().cloned().collect();
        let mut routes: Vec<serde_json::Value> = [
            serde_json::json!({"id": "auth-verify", "path": "/auth/verify"}),
            serde_json::json!({"id": "auth-service", "prefix": "/auth", "public": true}),
            serde_json::json!({"id": "quota-leases", "prefix": "/quota/v1/leases", "serviceOnly": true, "forwardCredential": true}),
        ]
        .into_iter()
        .filter(|r| !theirs.iter().any(|t| t["id"] == r["id"]))
        .collect();
        routes.extend(theirs);
        stack.write_policy(&serde_json::json!({ "routes": routes }))?;
        if stack.opts.redis_cluster {
            stack.start_redis_cluster().await?;
        } else {
            stack.start_redis().await?;
        }
        if stack.opts.gateway {
            stack.start_sidecar().await?;
            stack.start_envoy().await?;
        }
        Ok(stack)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sidecar's policy file.
    pub fn policy_path(&self) -> PathBuf {
        self.dir().join("policy.yaml")
    }

    /// Replaces the policy file (JSON is YAML); the sidecar reloads it within a second.
    pub fn write_policy(&self, doc: &serde_json::Value) -> anyhow::Result<()> {
        self.write_policy_text(&serde_json::to_string_pretty(doc)?)
    }

    /// Replaces the policy file with any text (a broken one included). Written to a temporary
    /// file and renamed, so the sidecar never reads half a file.
    pub fn write_policy_text(&self, text: &str) -> anyhow::Result<()> {
        let tmp = self.dir().join("policy.yaml.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, self.policy_path())?;
        Ok(())
    }

    pub fn gateway_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.ports.gateway, path)
    }

    /// The Unix socket the sidecar `name` listens on for Envoy (as the shipped configs have it).
    pub fn sidecar_socket(&self, name: &str) -> PathBuf {
        let path = self.dir().join(format!("{name}.sock"));
        // A Unix socket path holds at most 107 bytes: under a long TMPDIR, use /tmp (named
        // after the stack folder, so two stacks never share one).
        if path.as_os_str().len() < 100 {
            return path;
        }
        let stack = self.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        PathBuf::from(format!("/tmp/{stack}-{name}.sock"))
    }

    fn sidecar_config(&self, name: &str, grpc: u16, admin: u16) -> String {
        let mut text = format!(
            "grpcListen: [\"unix:{socket}\", 127.0.0.1:{grpc}]\nadminListen: 127.0.0.1:{admin}\niamUrl: {iam}\nredisUrl: \"{redis}\"\n\
             redisCluster: {cluster}\n\
             jwt:\n  issuers: [\"{ISSUER}\"]\n  audiences: [\"{AUDIENCE}\"]\n  hmacAlgorithms: [HS256, HS384, HS512]\n{jwt_extra}\
             jwks:\n  minRefreshInterval: 1s\n  refreshInterval: {refresh}s\n{discovery}\
             sessionCacheTtl: 1s\n\
             publicPaths: [/health]\nstripHeaders: [x-quota-lease]\n\
             policyFile: {policy}\npolicyReloadInterval: 1s\n",
            refresh = self.opts.jwks_refresh.as_secs().max(1),
            jwt_extra = self.opts.jwt_extra,
            discovery =
                if self.opts.jwks_discovery { format!("  discovery: {}\n", self.auth.url()) } else { String::new() },
            socket = self.sidecar_socket(name).display(),
            policy = self.policy_path().display(),
            iam = self.auth.url(),
            redis = self.sidecar_redis_url(),
            cluster = self.opts.redis_cluster,
        );
        text.push_str(&self.opts.sidecar_extra);
        text
    }

    /// Starts the sidecar and waits until `/readyz` says keys and Redis are ready.
    pub async fn start_sidecar(&mut self) -> anyhow::Result<()> {
        let (grpc, admin) = (self.ports.sidecar_grpc, self.ports.sidecar_admin);
        self.sidecar = Some(self.spawn_sidecar("sidecar", grpc, admin).await?);
        Ok(())
    }

    /// A second sidecar process sharing this stack's Redis, auth service and policy (the
    /// replicas of a deployment): its gRPC and admin ports, and the process (killed on drop).
    pub async fn start_sidecar_replica(&self) -> anyhow::Result<(u16, u16, Child)> {
        let (grpc, admin) = (free_port()?, free_port()?);
        Ok((grpc, admin, self.spawn_sidecar("sidecar-replica", grpc, admin).await?))
    }

    async fn spawn_sidecar(&self, name: &str, grpc: u16, admin: u16) -> anyhow::Result<Child> {
        let config = self.dir().join(format!("{name}.yaml"));
        std::fs::write(&config, self.sidecar_config(name, grpc, admin))?;
        let log = self.dir().join(format!("{name}.log"));
        let mut cmd = Command::new(paths::sidecar()?);
        cmd.arg("--config").arg(&config).env("RUST_LOG", "info");
        match &self.opts.hmac_secret_file {
            Some(bytes) => {
                let file = self.dir().join("jwt-secret");
                std::fs::write(&file, bytes)?;
                cmd.env("JWT_SECRET_FILE", &file).env_remove("JWT_SECRET");
            }
            None => {
                cmd.env("JWT_SECRET", DEV_JWT_SECRET).env_remove("JWT_SECRET_FILE");
            }
        }
        cmd.env_remove("IAM_URL").env_remove("REDIS_URL").env_remove("REDIS_PASSWORD");
        match &self.opts.redis_password {
            Some(password) => {
                let file = self.dir().join("redis-password");
                std::fs::write(&file, format!("{password}\n"))?;
                cmd.env("REDIS_PASSWORD_FILE", &file);
            }
            None => {
                cmd.env_remove("REDIS_PASSWORD_FILE");
            }
        }
        let mut child = spawn_logged(cmd, &log)?;
        let url = format!("http://127.0.0.1:{admin}/readyz");
        let client = self.client.clone();
        wait_until("authz-sidecar", Duration::from_secs(20), &log, &mut child, || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await?;
        Ok(child)
    }

    /// The sidecar's configuration file (for the CLI's commands).
    pub fn sidecar_config_path(&self) -> PathBuf {
        self.dir().join("sidecar.yaml")
    }

    /// The sidecar's Prometheus metrics.
    pub async fn sidecar_metrics(&self) -> anyhow::Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.ports.sidecar_admin);
        Ok(self.client.get(url).send().await?.text().await?)
    }

    /// One sample of the sidecar's `/metrics`: `series` as Prometheus prints it (the name, with
    /// its labels if it has any).
    pub async fn sidecar_metric(&self, series: &str) -> Option<f64> {
        let text = self.sidecar_metrics().await.ok()?;
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Kills the sidecar (as a crash would) and waits for it to be gone.
    pub async fn stop_sidecar(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.sidecar.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// The variables the Envoy templates need.
    pub fn envoy_vars(&self) -> anyhow::Result<BTreeMap<&'static str, String>> {
        let mut vars: BTreeMap<&'static str, String> = BTreeMap::new();
        vars.insert("SIDECAR_TIMEOUT", "1s".into());
        vars.insert("SIDECAR_TIMEOUT_ENVOY", "1s".into());
        vars.insert("JWT_ISSUER", ISSUER.into());
        vars.insert("JWT_AUDIENCE", AUDIENCE.into());
        let filter_template = std::fs::read_to_string(paths::workspace().join("envoy/filter.json"))?;
        let mut filter: serde_json::Value = serde_json::from_str(&render(&filter_template, &vars)?)?;
        if let (Some(extra), Some(obj)) = (&self.opts.filter_config_override, filter.as_object_mut()) {
            for (k, v) in extra.as_object().into_iter().flatten() {
                obj.insert(k.clone(), v.clone());
            }
        }
        vars.insert("FILTER_CONFIG", yaml_string(&filter.to_string()));
        vars.insert("WASM_PATH", paths::filter_wasm()?.display().to_string());
        vars.insert("ADMIN_ADDRESS", "127.0.0.1".into());
        vars.insert("ADMIN_PORT", self.ports.envoy_admin.to_string());
        vars.insert("LISTEN_ADDRESS", "127.0.0.1".into());
        vars.insert("LISTEN_PORT", self.ports.gateway.to_string());
        vars.insert("STATS_ADDRESS", "127.0.0.1".into());
        vars.insert("STATS_PORT", self.ports.envoy_stats.to_string());
        let timeout = std::env::var("ROUTE_TIMEOUT").ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(15);
        vars.insert("ROUTE_TIMEOUT", format!("{timeout}s"));
        vars.insert("SIDECAR_ADDRESS", pipe_address(&self.sidecar_socket("sidecar")));
        vars.insert("XFF_TRUSTED_HOPS", "0".into());
        vars.insert("SIDECAR_ADMIN_HOST", "127.0.0.1".into());
        vars.insert("SIDECAR_ADMIN_PORT", self.ports.sidecar_admin.to_string());
        // The auth stand-in serves the auth service's own endpoints (`/auth/*`) too.
        let iam = self.auth.addr;
        vars.insert("IAM_HOST", iam.ip().to_string());
        vars.insert("IAM_PORT", iam.port().to_string());
        for ((cluster, _, _), (_, addr)) in SERVICES.iter().zip(&self.upstreams) {
            let upper = cluster.to_ascii_uppercase();
            vars.insert(Box::leak(format!("{upper}_HOST").into_boxed_str()), addr.ip().to_string());
            vars.insert(Box::leak(format!("{upper}_PORT").into_boxed_str()), addr.port().to_string());
        }
        for (name, value) in &self.opts.var_overrides {
            vars.insert(name, value.clone());
        }
        Ok(vars)
    }

    /// Renders `envoy/<name>` (any of the shipped templates) with this stack's values into the
    /// stack folder, for `envoy --mode validate`.
    pub fn render_template(&self, name: &str) -> anyhow::Result<PathBuf> {
        let text = std::fs::read_to_string(paths::workspace().join("envoy").join(name))?;
        let path = self.dir().join(format!("rendered-{name}"));
        std::fs::write(&path, render(&text, &self.envoy_vars()?)?)?;
        Ok(path)
    }

    /// Renders the Envoy config for this stack's mode into the stack folder.
    pub fn render_envoy_config(&self) -> anyhow::Result<PathBuf> {
        let text = match (self.opts.mode, &self.opts.envoy_template) {
            (Mode::Wasm, _) => std::fs::read_to_string(paths::workspace().join("envoy/gateway.yaml"))?,
            (Mode::ExtAuthz, _) => std::fs::read_to_string(paths::workspace().join("envoy/gateway-ext-authz.yaml"))?,
            (Mode::Custom, Some(t)) => t.clone(),
            (Mode::Custom, None) => anyhow::bail!("Mode::Custom needs Options::envoy_template"),
        };
        let path = self.dir().join("envoy.yaml");
        std::fs::write(&path, render(&text, &self.envoy_vars()?)?)?;
        Ok(path)
    }

    /// Starts Envoy and waits until it is live and (wasm mode) every worker holds keys.
    pub async fn start_envoy(&mut self) -> anyhow::Result<()> {
        let config = self.render_envoy_config()?;
        let log = self.dir().join("envoy.log");
        let mut cmd = match &self.opts.envoy_cpus {
            Some(cpus) => {
                let mut c = Command::new("taskset");
                c.args(["-c", cpus]).arg(paths::envoy()?);
                c
            }
            None => Command::new(paths::envoy()?),
        };
        cmd.arg("-c").arg(&config).args([
            "--concurrency",
            &self.opts.concurrency.to_string(),
            "--disable-hot-restart",
            "--log-level",
            "info",
        ]);
        let mut child = spawn_logged(cmd, &log)?;
        let ready = format!("http://127.0.0.1:{}/ready", self.ports.envoy_admin);
        let client = self.client.clone();
        wait_until("envoy", Duration::from_secs(60), &log, &mut child, || {
            let (client, url) = (client.clone(), ready.clone());
            async move { client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await?;
        // Our filter in a caller's template (a benchmark variant) is waited for the same way.
        let custom_with_filter = self.opts.mode == Mode::Custom
            && self.opts.envoy_template.as_deref().is_some_and(|t| t.contains("root_id: authz"));
        if self.opts.mode == Mode::Wasm || custom_with_filter {
            // One key update per worker VM plus the main thread's VM.
            let workers = u64::from(self.opts.concurrency) + 1;
            let client = self.client.clone();
            // Keys come first on the control stream, then the policy with the shared settings, then
            // the full revocation snapshot. Waited for before anything is sent through the
            // listener: until a VM has its policy, every request (even `/health`) is a callout.
            let stats = format!("http://127.0.0.1:{}/stats?filter=authz_filter", self.ports.envoy_admin);
            wait_until("filter policy and revocations", Duration::from_secs(30), &log, &mut child, || {
                let (client, url) = (client.clone(), stats.clone());
                async move {
                    let policy = stat_value(&client, &url, "authz_filter.policy_updates").await;
                    let revocations = stat_value(&client, &url, "authz_filter.revocation_updates").await;
                    policy.is_some_and(|n| n >= workers) && revocations.is_some_and(|n| n >= workers)
                }
            })
            .await?;
        }
        // `/ready` can answer before the workers listen on the gateway port (each worker binds
        // its own socket): wait for the listener itself.
        let health = self.gateway_url("/health");
        let client = self.client.clone();
        wait_until("envoy listener", Duration::from_secs(30), &log, &mut child, || {
            let (client, url) = (client.clone(), health.clone());
            async move { client.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
        })
        .await?;
        self.envoy = Some(child);
        Ok(())
    }

    /// Kills Envoy and waits for it to be gone.
    pub async fn stop_envoy(&mut self) -> anyhow::Result<()> {
        if let Some(mut c) = self.envoy.take() {
            c.kill().await?;
        }
        Ok(())
    }

    /// Envoy's process id (for CPU and memory readings).
    pub fn envoy_pid(&self) -> Option<u32> {
        self.envoy.as_ref().and_then(Child::id)
    }

    /// The sidecar's process id.
    pub fn sidecar_pid(&self) -> Option<u32> {
        self.sidecar.as_ref().and_then(Child::id)
    }

    /// The value of an Envoy counter whose name ends with `suffix`.
    pub async fn envoy_stat(&self, suffix: &str) -> Option<u64> {
        let url = format!("http://127.0.0.1:{}/stats?filter={suffix}", self.ports.envoy_admin);
        stat_value(&self.client, &url, suffix).await
    }

    /// The Envoy log so far (for assertions on error messages).
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("envoy.log")).unwrap_or_default()
    }

    /// The sidecar log so far.
    pub fn sidecar_log(&self) -> String {
        std::fs::read_to_string(self.dir().join("sidecar.log")).unwrap_or_default()
    }
}

async fn stat_value(client: &reqwest::Client, url: &str, suffix: &str) -> Option<u64> {
    let text = client.get(url).send().await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| {
        let (name, value) = l.split_once(": ")?;
        name.ends_with(suffix).then(|| value.trim().parse().ok()).flatten()
    })
}
