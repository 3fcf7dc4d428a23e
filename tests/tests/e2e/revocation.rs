//! Revocation: a logout reaches every Envoy worker within milliseconds and is never lost.

use std::time::{Duration, Instant};

use authz_core::revocation::Revocation;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{self, DEV_KID, sign_kid, user_claims};
use serde_json::Value;

use super::client::bearer;

async fn start(mode: Mode) -> Stack {
    let mut opts = Options::test(mode).unwrap();
    // Fail closed the moment the control stream is lost (see the README's trade-off).
    opts.filter_config_override = Some(serde_json::json!({ "revocationStaleAfter": "0s" }));
    // The wasm mode's Redis requires a password, as the shipped manifests run it: the
    // subscription, the resync and every write authenticate (`REDIS_PASSWORD_FILE`).
    if mode == Mode::Wasm {
        opts.redis_password = Some(REDIS_PASSWORD.into());
    }
    Stack::start(opts).await.unwrap()
}

const REDIS_PASSWORD: &str = "revocation-test-redis-password";

/// One request on a fresh connection (so Envoy may place it on any worker).
async fn fresh(stack: &Stack, path: &str, auth: (&str, &str)) -> (u16, Value) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let r = client.get(stack.gateway_url(path)).header(auth.0, auth.1).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Filter VMs holding a control stream: one per worker plus Envoy's main thread.
fn filter_vms(stack: &Stack) -> u64 {
    u64::from(stack.opts.concurrency) + 1
}

async fn revocation_updates(stack: &Stack) -> u64 {
    stack.envoy_stat("authz_filter.revocation_updates").await.unwrap_or(0)
}

/// Waits until every filter VM has applied one more revocation update than `before` (wasm
/// mode; a no-op with native ext_authz, where the sidecar decides alone). Returns the time.
async fn until_every_vm_applied(stack: &Stack, before: u64) -> Duration {
    let start = Instant::now();
    if stack.opts.mode == Mode::Wasm {
        while revocation_updates(stack).await < before + filter_vms(stack) {
            assert!(start.elapsed() < Duration::from_secs(3), "revocation did not reach every worker");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    start.elapsed()
}

/// Polls until `auth` is refused with `code`; returns how long it took.
async fn until_refused(stack: &Stack, auth: (&str, &str), code: &str) -> Duration {
    let start = Instant::now();
    loop {
        let (status, body) = fresh(stack, "/api/tools/r", auth).await;
        if status == 401 {
            assert_eq!(body["error"], code, "{body}");
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(3), "revocation not applied: {status} {body}");
    }
}

/// After propagation, every one of `n` fresh connections is refused.
async fn all_refused(stack: &Stack, auth: (&str, &str), code: &str, n: usize) {
    for i in 0..n {
        let (status, body) = fresh(stack, "/api/tools/r", auth).await;
        assert_eq!((status, body["error"].as_str()), (401, Some(code)), "request {i}: {body}");
    }
}

async fn login(stack: &Stack, user: &str, password: &str) -> String {
    let r: Value = stack
        .client
        .post(format!("{}/auth/login", stack.auth.url()))
        .json(&serde_json::json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["access_token"].as_str().unwrap().to_string()
}

async fn logout(stack: &Stack, token: &str, everywhere: bool) {
    let q = if everywhere { "?everywhere=true" } else { "" };
    let r = stack.client.post(format!("{}/auth/logout{q}", stack.auth.url())).bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), 204);
}

pub async fn logout_reaches_every_worker(stack: &Stack) {
    let token = login(stack, "alice", "alice-demo-pw").await;
    let other_session = login(stack, "alice", "alice-demo-pw").await;
    let auth = bearer(&token);
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &auth)).await.0, 200);
    let before = revocation_updates(stack).await;
    let published = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    logout(stack, &token, false).await;
    let took = until_every_vm_applied(stack, before).await;
    if stack.opts.mode == Mode::Wasm {
        // Each hop recorded when it saw the fact (what the propagation benchmark reads).
        let received = stack
            .sidecar_metric("authz_revocation_last_received_timestamp_seconds")
            .await
            .unwrap_or_else(|| panic!("no pub/sub receipt time in the sidecar's metrics"));
        let applied = stack.envoy_stat("authz_filter.revocation_last_applied_unix_us").await.unwrap_or(0);
        assert!(received >= published.as_secs_f64(), "received at {received}, published at {published:?}");
        assert!(applied as f64 >= received * 1e6, "applied at {applied} µs, received at {received} s");
    }
    until_refused(stack, ("authorization", &auth), "token_revoked").await;
    all_refused(stack, ("authorization", &auth), "token_revoked", 20).await;
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &bearer(&other_session))).await.0, 200);
    eprintln!("logout applied after {took:?}");
}

pub async fn logout_everywhere(stack: &Stack) {
    let a1 = bearer(&login(stack, "alice", "alice-demo-pw").await);
    let a2 = bearer(&sign_kid(&user_claims("u-alice", "alice@lab.example", &["user"]), DEV_KID).unwrap());
    let bob = bearer(&login(stack, "bob", "bob-demo-pw").await);
    for t in [&a1, &a2, &bob] {
        assert_eq!(fresh(stack, "/api/tools/r", ("authorization", t)).await.0, 200);
    }
    let before = revocation_updates(stack).await;
    logout(stack, a1.trim_start_matches("Bearer "), true).await;
    until_every_vm_applied(stack, before).await;
    until_refused(stack, ("authorization", &a2), "token_revoked").await;
    all_refused(stack, ("authorization", &a1), "token_revoked", 10).await;
    all_refused(stack, ("authorization", &a2), "token_revoked", 10).await;
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &bob)).await.0, 200, "other users unaffected");
}

pub async fn revoked_api_key(stack: &Stack) {
    assert_eq!(fresh(stack, "/api/tools/r", ("x-api-key", "demo-api-key-bob")).await.0, 200);
    // API keys are decided by the sidecar, which applies the revocation itself.
    stack.auth.state.revoke_api_key("demo-api-key-bob").await.unwrap();
    until_refused(stack, ("x-api-key", "demo-api-key-bob"), "api_key_revoked").await;
    all_refused(stack, ("x-api-key", "demo-api-key-bob"), "api_key_revoked", 5).await;
}

/// A revocation published while the sidecar is away (the message is lost) is still applied
/// after it comes back, from the stored state.
pub async fn lost_message(stack: &mut Stack) {
    let c = user_claims("u-lost", "lost@lab.example", &["user"]);
    let auth = bearer(&sign_kid(&c, DEV_KID).unwrap());
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &auth)).await.0, 200);
    stack.stop_sidecar().await.unwrap();
    let r = Revocation::Token { jti: c["jti"].as_str().unwrap().into(), expires_at: tokens::now() + 900 };
    stack.auth.state.revoke(&r, true).await.unwrap(); // published to nobody
    stack.start_sidecar().await.unwrap();
    until_refused(stack, ("authorization", &auth), "token_revoked").await;

    // A subscription dropped by Redis: stored-only fact, then the sidecar's pub/sub connection
    // is killed; it resubscribes, resyncs, and the fact applies.
    let c2 = user_claims("u-lost2", "lost2@lab.example", &["user"]);
    let auth2 = bearer(&sign_kid(&c2, DEV_KID).unwrap());
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &auth2)).await.0, 200);
    let r2 = Revocation::Session { sid: c2["sid"].as_str().unwrap().into(), expires_at: tokens::now() + 900 };
    stack.auth.state.revoke(&r2, false).await.unwrap();
    // One node (in a cluster, the first seed): the one the sidecar subscribes on.
    let url = stack.redis_url();
    let client = redis::Client::open(url.split(',').next().unwrap_or_default()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let killed: i64 = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("pubsub").query_async(&mut conn).await.unwrap();
    assert!(killed >= 1, "the sidecar held a pub/sub connection");
    until_refused(stack, ("authorization", &auth2), "token_revoked").await;
}

/// The sidecar restarts under traffic: a token revoked during the gap is never accepted; the
/// filters reconnect and resync without an Envoy restart.
pub async fn sidecar_restart_under_traffic(stack: &mut Stack) {
    let doomed = user_claims("u-doomed", "d@lab.example", &["user"]);
    let doomed_auth = bearer(&sign_kid(&doomed, DEV_KID).unwrap());
    let good_auth = bearer(&sign_kid(&user_claims("u-good", "g@lab.example", &["user"]), DEV_KID).unwrap());
    assert_eq!(fresh(stack, "/api/tools/r", ("authorization", &doomed_auth)).await.0, 200);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let revoked_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let traffic = {
        let (client, url) = (stack.client.clone(), stack.gateway_url("/api/tools/t"));
        let (stop, revoked_at, doomed_auth) = (stop.clone(), revoked_at.clone(), doomed_auth.clone());
        tokio::spawn(async move {
            let mut after_revocation = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let sent = Instant::now();
                let status = client
                    .get(&url)
                    .header("authorization", &doomed_auth)
                    .send()
                    .await
                    .map_or(0, |r| r.status().as_u16());
                if revoked_at.lock().unwrap().is_some_and(|t| sent > t) {
                    after_revocation.push(status);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            after_revocation
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let closed_before = stack.envoy_stat("authz_filter.control_stream_closed").await.unwrap_or(0);
    stack.stop_sidecar().await.unwrap();
    // The gap starts when the workers see their control streams close (a crash is noticed
    // within milliseconds; the README states this window).
    let workers = u64::from(stack.opts.concurrency);
    let deadline = Instant::now() + Duration::from_secs(5);
    while stack.envoy_stat("authz_filter.control_stream_closed").await.unwrap_or(0) < closed_before + workers {
        assert!(Instant::now() < deadline, "workers did not notice the sidecar going away");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = Revocation::Token { jti: doomed["jti"].as_str().unwrap().into(), expires_at: tokens::now() + 900 };
    stack.auth.state.revoke(&r, true).await.unwrap();
    *revoked_at.lock().unwrap() = Some(Instant::now());
    tokio::time::sleep(Duration::from_millis(500)).await;
    stack.start_sidecar().await.unwrap();
    until_refused(stack, ("authorization", &doomed_auth), "token_revoked").await;
    // Keys and revocations back on every worker: the good token is verified locally again.
    let deadline = Instant::now() + Duration::from_secs(5);
    while fresh(stack, "/api/tools/r", ("authorization", &good_auth)).await.0 != 200 {
        assert!(Instant::now() < deadline, "filters did not recover");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let statuses = traffic.await.unwrap();
    assert!(!statuses.is_empty());
    assert!(!statuses.contains(&200), "a revoked token was accepted during the restart: {statuses:?}");
    assert!(statuses.iter().all(|s| *s == 401 || *s == 503), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_the_wasm_filter() {
    let mut stack = start(Mode::Wasm).await;
    logout_reaches_every_worker(&stack).await;
    logout_everywhere(&stack).await;
    revoked_api_key(&stack).await;
    lost_message(&mut stack).await;
    sidecar_restart_under_traffic(&mut stack).await;
    // Redis refuses anyone without the password; the sidecar's log never shows it.
    let anonymous = redis::Client::open(format!("redis://127.0.0.1:{}", stack.ports.redis)).unwrap();
    let mut conn = anonymous.get_multiplexed_async_connection().await.unwrap();
    let refused: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
    assert!(refused.is_err_and(|e| e.to_string().contains("NOAUTH")), "Redis without a password?");
    let log = std::fs::read_to_string(stack.dir().join("sidecar.log")).unwrap();
    assert!(log.contains("redis") && !log.contains(REDIS_PASSWORD), "the sidecar's log shows the Redis password");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_through_native_ext_authz() {
    let mut stack = start(Mode::ExtAuthz).await;
    logout_reaches_every_worker(&stack).await;
    logout_everywhere(&stack).await;
    revoked_api_key(&stack).await;
    lost_message(&mut stack).await;
}
