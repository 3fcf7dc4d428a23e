//! Wires the parts together and serves gRPC and HTTP until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::redis_conn::RedisConn;
use anyhow::Context as _;
use authz_proto::authz::v1::control_server::ControlServer;
use authz_proto::authz::v1::quota_server::QuotaServer;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use std::path::PathBuf;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tracing::{info, warn};

use crate::serve::listen::{self, Listen};

use crate::audit::AuditSink;
use crate::backend::http_auth::HttpAuthService;
use crate::backend::redis_kv::RedisKv;
use crate::check::{AuthzService, Decider};
use crate::check::{Backends, Shared};
use crate::config::Config;
use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::RevocationHub;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::quota::store::QuotaStore;
use crate::serve::access_log::AccessLogs;
use crate::serve::admin::{self, AdminState};
use crate::serve::control::ControlService;
use crate::serve::quota_api::{QuotaApi, QuotaGrpc};

/// Runs the sidecar until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let policy = Arc::new(PolicyStore::new(config.initial_policy()?));
    if let Some(path) = &config.policy_file {
        policy.spawn_watcher(path.clone(), config.known(), config.policy_reload_interval, Arc::clone(&metrics));
    }
    let http = reqwest::Client::builder()
        .timeout(config.iam_timeout)
        .connect_timeout(config.iam_timeout)
        .build()
        .context("building the HTTP client")?;

    let keys = KeyStores::from_config(&config, &http, &metrics)?;
    keys.spawn_refreshers(&config);

    // Lazy: the sidecar starts (and reports not-ready) while Redis is away, and reconnects.
    let redis =
        RedisConn::open(&config.redis_url, config.redis_cluster, config.cache.redis_timeout).context("redisUrl")?;
    // The audit writer's pipelines get their own connection, so a burst of audit events never
    // queues in front of a request's cache lookup or quota script.
    let audit_redis =
        RedisConn::open(&config.redis_url, config.redis_cluster, config.cache.redis_timeout).context("redisUrl")?;
    let revocations = Arc::new(RevocationHub::new(Arc::clone(&metrics)));
    revocations.spawn_subscriber(
        crate::backend::redis_conn::seeds(&config.redis_url).into_iter().map(String::from).collect(),
        config.redis_cluster,
        config.revocation.channel.clone(),
        config.revocation.key_prefix.clone(),
    );
    let audit = Arc::new(AuditSink::spawn(
        audit_redis,
        config.audit.clone(),
        config.cache.redis_timeout.max(Duration::from_millis(500)),
        Arc::clone(&metrics),
    ));
    let kv = RedisKv::new(
        redis.clone(),
        config.cache.redis_prefix.clone(),
        config.cache.redis_timeout,
        Arc::clone(&metrics),
    );
    let backends = Backends {
        kv: Arc::new(kv),
        auth: Arc::new(HttpAuthService::new(http, &config.iam_url)),
        leases: Arc::new(QuotaStore::new(redis.clone(), &config.cache.redis_prefix, config.cache.redis_timeout)),
    };
    let shared = Shared {
        keys: keys.clone(),
        policy: Arc::clone(&policy),
        revocations: Arc::clone(&revocations),
        metrics: Arc::clone(&metrics),
    };
    let decider = Arc::new(Decider::new(&config, shared, backends));
    let quota = Arc::clone(&decider.quota);
    let quota_api = Arc::new(QuotaApi::new(Arc::clone(&decider)));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AuthorizationServer<AuthzService>>().await;

    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin on {}", config.admin_listen))?;
    let mut grpc_listeners = Vec::new();
    for listen in &config.grpc_listen.0 {
        grpc_listeners.push((listen.clone(), Bound::bind(listen).await?));
    }
    let names: Vec<String> = grpc_listeners.iter().map(|(_, b)| b.name()).collect();
    info!(grpc = ?names, admin = %admin_listener.local_addr()?, iam = %config.iam_url, redis = %config.redacted_redis_url(), "authz-sidecar listening");
    let token_configured = config.grpc_token.is_some();
    for (listen, _) in &grpc_listeners {
        if !listen.authenticated(token_configured) && config.jwt_secret.is_some() {
            warn!(listener = %listen, "unauthenticated gRPC listener: filters subscribing here get the public keys only, so HMAC tokens they see are verified by the sidecar");
        }
    }

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let admin_state = Arc::new(AdminState {
        keys: keys.clone(),
        revocations: Arc::clone(&revocations),
        redis,
        metrics: Arc::clone(&metrics),
        redis_timeout: config.cache.redis_timeout,
    });
    let admin_server = axum::serve(admin_listener, admin::router(admin_state, Arc::clone(&quota_api)))
        .with_graceful_shutdown(wait(stop_rx.clone()));

    let access_logs = AccessLogServiceServer::new(AccessLogs::new(audit, quota, Arc::clone(&metrics)));
    let authz = AuthorizationServer::new(AuthzService::new(decider));
    let quota_grpc = QuotaServer::new(QuotaGrpc(quota_api));
    let mut grpc_servers = Vec::new();
    for (listen, bound) in grpc_listeners {
        let authenticated = listen.authenticated(token_configured);
        // The token guards TCP listeners; a Unix socket is guarded by its file mode.
        let token = match listen {
            Listen::Tcp(_) => config.grpc_token.clone(),
            Listen::Unix(_) => None,
        };
        let router = tonic::transport::Server::builder()
            .layer(tonic::service::InterceptorLayer::new(RequireToken(token.map(Arc::from))))
            .add_service(health_service.clone())
            .add_service(authz.clone())
            .add_service(access_logs.clone())
            .add_service(quota_grpc.clone())
            .add_service(ControlServer::new(ControlService::new(
                keys.clone(),
                Arc::clone(&revocations),
                Arc::clone(&policy),
                Arc::clone(&metrics),
                config.control_heartbeat_interval,
                authenticated,
                &config.shared_settings(),
            )));
        let stop = wait(stop_rx.clone());
        grpc_servers.push(tokio::spawn(async move {
            match bound {
                Bound::Tcp(l) => router.serve_with_incoming_shutdown(TcpListenerStream::new(l), stop).await,
                Bound::Unix(l, _) => router.serve_with_incoming_shutdown(UnixListenerStream::new(l), stop).await,
            }
        }));
    }
    let grpc_server = async move {
        for server in grpc_servers {
            server.await.context("gRPC server task")??;
        }
        anyhow::Ok(())
    };
    let (grpc, admin) = tokio::join!(grpc_server, admin_server);
    grpc.context("gRPC server")?;
    admin.context("admin server")?;
    info!("authz-sidecar stopped");
    Ok(())
}

/// A bound gRPC listener.
enum Bound {
    Tcp(TcpListener),
    /// The socket and its path (removed again when the server stops).
    Unix(UnixListener, SocketFile),
}

/// Removes the socket file on drop, so a restart finds the path free.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Bound {
    async fn bind(listen: &Listen) -> anyhow::Result<Self> {
        match listen {
            Listen::Tcp(addr) => {
                let l = TcpListener::bind(addr).await.with_context(|| format!("binding gRPC on {addr}"))?;
                Ok(Bound::Tcp(l))
            }
            Listen::Unix(path) => {
                // A socket left by a previous run would make bind fail; anything else at that
                // path is not ours to remove.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt as _;
                    if !meta.file_type().is_socket() {
                        anyhow::bail!("gRPC socket path {} exists and is not a socket", path.display());
                    }
                    std::fs::remove_file(path).with_context(|| format!("removing stale socket {}", path.display()))?;
                }
                let l = UnixListener::bind(path).with_context(|| format!("binding gRPC on unix:{}", path.display()))?;
                // Owner and group (Envoy in the same pod runs as the same user or group).
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
                    .with_context(|| format!("setting the mode of {}", path.display()))?;
                Ok(Bound::Unix(l, SocketFile(path.clone())))
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Bound::Tcp(l) => l.local_addr().map_or_else(|_| "tcp".into(), |a| a.to_string()),
            Bound::Unix(_, f) => format!("unix:{}", f.0.display()),
        }
    }
}

/// Refuses a gRPC call whose `authorization` metadata does not carry the listener's token.
#[derive(Clone)]
struct RequireToken(Option<Arc<str>>);

impl tonic::service::Interceptor for RequireToken {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(token) = &self.0 else { return Ok(req) };
        let header = req.metadata().get("authorization").map(|v| v.as_bytes());
        if listen::token_matches(header, token) {
            Ok(req)
        } else {
            Err(tonic::Status::unauthenticated("this listener needs the sidecar's gRPC token"))
        }
    }
}
