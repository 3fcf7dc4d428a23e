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
    /// Print what the policy decides for a token and a request (offline; no session checks).
    Check {
        /// The bearer token (omit for an anonymous request).
        #[arg(long)]
        token: Option<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        #[arg(long)]
        path: String,
        /// The auth service's JWKS document, to verify RS/ES/PS/EdDSA tokens offline.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
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
        Some(Command::Check { token, method, path, jwks }) => {
            return match authz_sidecar::cli::check(&config, jwks.as_deref(), token.as_deref(), &method, &path) {
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
    match authz_sidecar::server::run(config, shutdown).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "authz-sidecar failed");
            ExitCode::FAILURE
        }
    }
}
