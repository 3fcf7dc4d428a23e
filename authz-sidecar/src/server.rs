//! Wires the parts together and serves gRPC and HTTP until shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::redis_conn::RedisConn;
use anyhow::Context as _;
use authz_core::ClaimsPolicy;
use authz_core::headers::StripRules;
use authz_proto::authz::v1::control_server::ControlServer;
use authz_proto::authz::v1::quota_server::QuotaServer;
use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

use crate::access_log::AccessLogs;
use crate::admin::{self, AdminState};
use crate::audit::AuditSink;
use crate::check::{AuthzService, Decider};
use crate::config::Config;
use crate::control::ControlService;
use crate::identity_cache::IdentityCache;
use crate::introspect::Introspector;
use crate::keystore::KeyStore;
use crate::metrics::Metrics;
use crate::policy::PolicyStore;
use crate::quota::Quota;
use crate::quota::store::QuotaStore;
use crate::quota_api::{QuotaApi, QuotaGrpc};
use crate::redis_kv::RedisKv;
use crate::revocations::RevocationHub;
use crate::session::SessionChecker;

/// Runs the sidecar until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::default());
    let policy = Arc::new(PolicyStore::new(config.initial_policy()?));
    if let Some(path) = &config.policy_file {
        policy.spawn_watcher(
            path.clone(),
            config.public_paths.clone(),
            config.policy_reload_interval,
            Arc::clone(&metrics),
        );
    }
    let http = reqwest::Client::builder()
        .timeout(config.iam_timeout)
        .connect_timeout(config.iam_timeout)
        .build()
        .context("building the HTTP client")?;

    let jwks_url = format!("{}{}", config.iam_url.trim_end_matches('/'), config.jwks.path);
    let keys = Arc::new(KeyStore::new(
        http.clone(),
        jwks_url,
        config.jwt_secret.clone(),
        config.hmac_algorithms()?,
        config.jwks.min_refresh_interval,
        Arc::clone(&metrics),
    ));
    keys.spawn_refresher(config.jwks.refresh_interval);

    // Lazy: the sidecar starts (and reports not-ready) while Redis is away, and reconnects.
    let redis =
        RedisConn::open(&config.redis_url, config.redis_cluster, config.cache.redis_timeout).context("redisUrl")?;
    // The audit writer's pipelines get their own connection, so a burst of audit events never
    // queues in front of a request's cache lookup or quota script.
    let audit_redis =
        RedisConn::open(&config.redis_url, config.redis_cluster, config.cache.redis_timeout).context("redisUrl")?;
    let revocations = Arc::new(RevocationHub::new(Arc::clone(&metrics)));
    revocations.spawn_subscriber(
        crate::redis_conn::seeds(&config.redis_url).into_iter().map(String::from).collect(),
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
    let quota = Arc::new(Quota::new(
        QuotaStore::new(redis.clone(), &config.cache.redis_prefix, config.cache.redis_timeout),
        config.quota.clone(),
        config.tenant_claim.clone(),
        Arc::clone(&metrics),
    ));

    let kv = RedisKv::new(
        redis.clone(),
        config.cache.redis_prefix.clone(),
        config.cache.redis_timeout,
        Arc::clone(&metrics),
    );
    let decider = Arc::new(Decider {
        keys: Arc::clone(&keys),
        cache: IdentityCache::new(config.cache.memory_capacity, kv.clone(), config.cache.max_ttl, Arc::clone(&metrics)),
        introspector: Introspector::new(
            http.clone(),
            &config.iam_url,
            kv,
            config.api_keys.positive_ttl,
            config.api_keys.negative_ttl,
            Arc::clone(&metrics),
        ),
        sessions: SessionChecker::new(http, &config.iam_url, config.session_cache_ttl, Arc::clone(&metrics)),
        claims: ClaimsPolicy {
            issuers: config.jwt.issuers.clone(),
            audiences: config.jwt.audiences.clone(),
            clock_skew_secs: config.jwt.clock_skew.as_secs(),
        },
        strip: StripRules::new(config.strip_headers.clone()),
        policy: Arc::clone(&policy),
        revocations: Arc::clone(&revocations),
        metrics: Arc::clone(&metrics),
        quota: Arc::clone(&quota),
        tenant_claim: config.tenant_claim.clone(),
    });
    let quota_api = Arc::new(QuotaApi::new(Arc::clone(&decider)));

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_serving::<AuthorizationServer<AuthzService>>().await;

    let grpc_listener = TcpListener::bind(config.grpc_listen)
        .await
        .with_context(|| format!("binding gRPC on {}", config.grpc_listen))?;
    let admin_listener = TcpListener::bind(config.admin_listen)
        .await
        .with_context(|| format!("binding admin on {}", config.admin_listen))?;
    info!(grpc = %grpc_listener.local_addr()?, admin = %admin_listener.local_addr()?, iam = %config.iam_url, redis = %config.redacted_redis_url(), "authz-sidecar listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let admin_state = Arc::new(AdminState {
        keys: Arc::clone(&keys),
        revocations: Arc::clone(&revocations),
        redis,
        metrics: Arc::clone(&metrics),
        redis_timeout: config.cache.redis_timeout,
    });
    let admin_server = axum::serve(admin_listener, admin::router(admin_state, Arc::clone(&quota_api)))
        .with_graceful_shutdown(wait(stop_rx.clone()));

    let access_logs = AccessLogs::new(audit, quota, Arc::clone(&metrics));
    let grpc_server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(AuthorizationServer::new(AuthzService::new(decider)))
        .add_service(AccessLogServiceServer::new(access_logs))
        .add_service(QuotaServer::new(QuotaGrpc(quota_api)))
        .add_service(ControlServer::new(ControlService::new(
            keys,
            revocations,
            policy,
            metrics,
            config.control_heartbeat_interval,
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(grpc_listener), wait(stop_rx));

    let (grpc, admin) = tokio::join!(grpc_server, admin_server);
    grpc.context("gRPC server")?;
    admin.context("admin server")?;
    info!("authz-sidecar stopped");
    Ok(())
}
