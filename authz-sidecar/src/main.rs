//! `authz-sidecar`: run the server.

use std::path::PathBuf;
use std::process::ExitCode;

use authz_sidecar::config::{Config, LogFormat, ProcessEnv};
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The gateway's ext_authz and control-plane sidecar. Without a command, it serves.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// YAML configuration file (every key is documented in the README).
    #[arg(long, env = "AUTHZ_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Check a configuration and its policy file; exits non-zero with the reason if broken.
    Validate,
    /// Print what the gateway decides for a request (offline: what needs the running gateway is named).
    Check {
        /// The bearer token (omit for an anonymous request).
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        /// An API key instead of a token (its identity is only known online).
        #[arg(long, conflicts_with = "token")]
        api_key: Option<String>,
        /// The `X-Action-Token` of a step-up route.
        #[arg(long)]
        action_token: Option<String>,
        /// The auth service's JWKS document, to verify RS/ES/PS/EdDSA tokens offline.
        #[arg(long)]
        jwks: Option<PathBuf>,
        /// Revocation facts (the README's revocation JSON), one per line or a JSON array.
        #[arg(long)]
        revocations: Option<PathBuf>,
    },
    /// HPC quota in the shared Redis.
    #[command(subcommand)]
    Quota(QuotaCommand),
    /// The audit trail in the shared Redis.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, clap::Subcommand)]
enum QuotaCommand {
    /// Current use, limits and live leases of a user or a lab.
    Show {
        #[arg(long, conflicts_with = "lab", required_unless_present = "lab")]
        user: Option<String>,
        #[arg(long)]
        lab: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
enum AuditCommand {
    /// The most recent audit events (oldest first), optionally following new ones.
    Tail {
        /// Keep printing new events as they arrive.
        #[arg(long)]
        follow: bool,
        /// Only events of this user id.
        #[arg(long)]
        user: Option<String>,
        /// Only `allow`, `deny` or `none` decisions.
        #[arg(long)]
        decision: Option<String>,
        /// How many recent events to print first.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
}

/// clap enforces `--user` or `--lab`; this only satisfies the type checker.
fn unreachable_args() -> (&'static str, String) {
    eprintln!("authz-sidecar: quota show needs --user or --lab");
    std::process::exit(2)
}

fn init_logging(cfg: &Config) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cfg.log.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    authz_core::crypto::ensure_provider();
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref(), &ProcessEnv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authz-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command {
        Some(Command::Validate) => {
            return match config.initial_policy() {
                Ok(p) => {
                    println!("ok: configuration valid; policy version {} with {} rules", p.version, p.table.len());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authz-sidecar: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Check { token, api_key, action_token, method, path, jwks, revocations }) => {
            let offline = authz_sidecar::cli::Offline { jwks: jwks.as_deref(), revocations: revocations.as_deref() };
            let request = authz_sidecar::cli::CheckRequest {
                method: &method,
                path: &path,
                token: token.as_deref(),
                api_key: api_key.as_deref(),
                action_token: action_token.as_deref(),
            };
            return match authz_sidecar::cli::check(&config, &offline, &request) {
                Ok(v) => {
                    println!("{v}");
                    if v["decision"] == "allow" { ExitCode::SUCCESS } else { ExitCode::from(1) }
                }
                Err(e) => {
                    eprintln!("authz-sidecar: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Quota(QuotaCommand::Show { user, lab, json })) => {
            let (scope, id) = match (user, lab) {
                (Some(u), _) => ("user", u),
                (None, Some(l)) => ("lab", l),
                (None, None) => unreachable_args(),
            };
            return match authz_sidecar::ops::quota_show(&config, scope, &id, json).await {
                Ok(text) => {
                    println!("{}", text.trim_end());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("authz-sidecar: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Audit(AuditCommand::Tail { follow, user, decision, count, json })) => {
            let filter = authz_sidecar::ops::TailFilter { user, decision };
            return match authz_sidecar::ops::audit_tail(&config, count, follow, &filter, json).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("authz-sidecar: {e:#}");
                    ExitCode::from(2)
                }
            };
        }
        Some(Command::Serve) | None => {}
    }
    init_logging(&config);
    let shutdown = async {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
    };
    match authz_sidecar::serve::server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "authz-sidecar failed");
            ExitCode::FAILURE
        }
    }
}
