//! HPC quota on compute routes and the audit trail, end to end: real Envoy, sidecar(s), Redis.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use authz_e2e::paths;
use authz_e2e::stack::{Mode, Options, Stack};
use authz_e2e::tokens::{DEV_KID, sign_rs256, user_claims};
use authz_proto::authz::v1::quota_client::QuotaClient;
use authz_proto::authz::v1::{ReleaseRequest, RenewRequest};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use serde_json::{Value, json};

use super::client::{Reply, bearer, get, is_uuid, post};

mod audit;
pub use audit::one_audit_event_per_request;

/// TES task submission is the compute route; limits: 8 GPUs per user, 12 per lab.
pub fn options(mode: Mode) -> Options {
    let mut opts = Options::test(mode).unwrap();
    opts.routes = json!([
        {"id": "tes-submit", "prefix": "/api/tes/v1/tasks", "methods": ["POST"], "quota": {"resources": "tes"}},
        {"id": "lims-admin", "prefix": "/api/lims/admin", "rolesAnyOf": ["admin"]},
    ]);
    opts.sidecar_extra = "tenantClaim: lab\nquota:\n  leaseTtl: 60s\n  perUser: { gpus: 8 }\n  perLab: { gpus: 12 }\n\
                          audit:\n  stream: authz:audit\n"
        .into();
    opts
}

fn user(sub: &str, lab: &str) -> String {
    let mut claims = user_claims(sub, &format!("{sub}@lab.example"), &["user"]);
    claims["lab"] = json!(lab);
    bearer(&sign_rs256(&claims, Some(DEV_KID)).unwrap())
}

fn service(name: &str) -> String {
    let mut claims = user_claims(&format!("svc-{name}"), "svc@lab.example", &[]);
    claims["svc"] = json!(name);
    bearer(&sign_rs256(&claims, Some(DEV_KID)).unwrap())
}

/// A TES task asking for `gpus` GPUs.
pub fn task(gpus: u32) -> String {
    json!({"name": "align", "resources": {"cpu_cores": 1, "ram_gb": 0.5, "backend_parameters": {"gpu": gpus.to_string()}},
           "executors": [{"image": "alpine", "command": ["true"]}]})
    .to_string()
}

async fn submit(stack: &Stack, auth: &str, gpus: u32, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("authorization", auth), ("content-type", "application/json"), ("user-agent", "quota-test")];
    headers.extend_from_slice(extra);
    post(stack, "/api/tes/v1/tasks", &headers, task(gpus)).await
}

/// Retries `f` until it is true or `within` has passed (for effects that travel through the
/// access log, which Envoy flushes every 200 ms).
async fn eventually<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !f().await {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_post(stack: &Stack, path: &str, auth: Option<&str>) -> (u16, Value) {
    let mut req = stack.client.post(format!("http://127.0.0.1:{}{path}", stack.ports.sidecar_admin));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// The sum of the sidecar's counter `name` over the series whose labels contain `label`.
async fn metric(stack: &Stack, name: &str, label: &str) -> u64 {
    let text = stack.sidecar_metrics().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Every event in the audit stream.
pub async fn audit_events(stack: &Stack) -> Vec<BTreeMap<String, String>> {
    let xrange = redis::cmd("XRANGE").arg("authz:audit").arg("-").arg("+").clone();
    let reply: redis::streams::StreamRangeReply = if stack.cluster_ports.is_empty() {
        let client = redis::Client::open(stack.redis_url()).unwrap();
        xrange.query_async(&mut client.get_multiplexed_async_connection().await.unwrap()).await.unwrap()
    } else {
        let seeds: Vec<String> = stack.redis_url().split(',').map(String::from).collect();
        let client = redis::cluster::ClusterClient::new(seeds).unwrap();
        xrange.query_async(&mut client.get_async_connection().await.unwrap()).await.unwrap()
    };
    reply
        .ids
        .iter()
        .map(|e| {
            e.map
                .iter()
                .map(|(k, v)| (k.clone(), redis::from_redis_value_ref::<String>(v).unwrap_or_default()))
                .collect()
        })
        .collect()
}

/// The sidecar CLI against this stack's configuration.
fn cli(stack: &Stack, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(paths::sidecar().unwrap())
        .arg("--config")
        .arg(stack.sidecar_config_path())
        .args(args)
        .env_remove("IAM_URL")
        .env_remove("REDIS_URL")
        .output()
        .unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// Leases through the gateway: granted with `X-Quota-Lease`, refused with the numbers, freed
/// by a release, by an upstream error and by Redis coming back empty; Redis down fails compute
/// requests closed (503) and nothing else.
pub async fn leases_through_the_gateway(stack: &mut Stack) {
    let alice = user("u-alice", "lab-a");
    let r = submit(stack, &alice, 2, &[("x-quota-lease", "forged")]).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let lease = r.upstream("x-quota-lease").as_str().unwrap_or_default().to_string();
    assert!(is_uuid(&lease), "lease {:?}", r.upstream("x-quota-lease"));
    assert_eq!(r.upstream("x-user-id"), "u-alice");

    // Over quota: 403 with the numbers.
    let r = submit(stack, &alice, 7, &[]).await;
    assert_eq!((r.status, r.error()), (403, "quota_exceeded"), "{}", r.json);
    assert_eq!(
        (&r.json["scope"], &r.json["resource"], &r.json["limit"], &r.json["in_use"], &r.json["requested"]),
        (&json!("user"), &json!("gpus"), &json!(8), &json!(2), &json!(7)),
    );
    assert!(r.json["trace_id"].is_string());

    // Not a compute request: no lease, no quota.
    let r = get(stack, "/api/tes/v1/tasks", &[("authorization", &alice)]).await;
    assert_eq!((r.status, r.upstream("x-quota-lease")), (200, &Value::Null));

    // Unreadable resources: 400; a body over the limit: 413; neither reaches the service.
    let bad =
        post(stack, "/api/tes/v1/tasks", &[("authorization", &alice)], r#"{"resources": {"cpu_cores": "many"}}"#).await;
    assert_eq!((bad.status, bad.error()), (400, "quota_request_invalid"), "{}", bad.json);
    let big = post(stack, "/api/tes/v1/tasks", &[("authorization", &alice)], vec![b' '; 2 << 20]).await;
    assert_eq!(big.status, 413);

    // The service fails: the lease ends (reported through the access log).
    let r = submit(stack, &alice, 6, &[("x-echo-status", "500")]).await;
    assert_eq!(r.status, 500);
    eventually("an upstream error releases its lease", Duration::from_secs(5), || async {
        metric(stack, "authz_quota_lease_updates_total", "upstream_error").await >= 1
    })
    .await;
    let six = submit(stack, &alice, 6, &[]).await;
    assert_eq!(six.status, 200, "2 + 6 GPUs fit after the failed request's lease ended: {}", six.json);

    // `quota show` sees 8 GPUs in two leases.
    let (ok, out) = cli(stack, &["quota", "show", "--user", "u-alice", "--json"]);
    assert!(ok, "{out}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((&shown["usage"]["gpus"], shown["usage"]["leases"].as_array().map(Vec::len)), (&json!(8), Some(2)));
    assert_eq!(shown["limits"]["gpus"], 8);
    let (ok, out) = cli(stack, &["quota", "show", "--lab", "lab-a"]);
    assert!(ok && out.contains("gpus        8/12"), "{out}");

    // Releasing takes a service token.
    let path = format!("/quota/v1/leases/{lease}/release");
    assert_eq!(admin_post(stack, &path, None).await.0, 401);
    assert_eq!(admin_post(stack, &path, Some(&alice)).await.0, 403, "a user cannot release leases");
    let (status, body) = admin_post(stack, &path, Some(&service("tes"))).await;
    assert_eq!((status, &body["found"]), (200, &json!(true)), "{body}");
    assert_eq!(admin_post(stack, &path, Some(&service("tes"))).await.0, 404, "already released");
    assert_eq!(submit(stack, &alice, 2, &[]).await.status, 200, "the released GPUs are free again");

    // The same API through the gateway, as a compute service in the cluster calls it (the
    // admin port is not reachable from the mesh): the shipped `quota-leases` rule admits
    // service tokens only, then the sidecar checks the token again.
    let held = six.upstream("x-quota-lease").as_str().unwrap_or_default().to_string();
    let renew = format!("/quota/v1/leases/{held}/renew");
    let release = format!("/quota/v1/leases/{held}/release");
    let json = [("content-type", "application/json")];
    assert_eq!(post(stack, &renew, &json, r#"{"ttlSeconds": 30}"#).await.status, 401, "no token");
    let r = post(stack, &renew, &[("authorization", &alice), json[0]], r#"{"ttlSeconds": 30}"#).await;
    assert_eq!((r.status, r.error()), (403, "service_only"), "a user is refused at the gateway: {}", r.json);
    let tes = service("tes");
    let r = post(stack, &renew, &[("authorization", &tes), json[0]], r#"{"ttlSeconds": 30}"#).await;
    assert_eq!((r.status, &r.json["found"]), (200, &json!(true)), "{}", r.json);
    assert!(r.json["expiresAtMs"].as_u64().is_some_and(|ms| ms > 0), "{}", r.json);
    assert!(r.headers.contains_key("x-trace-id"), "answered through the gateway");
    let r = post(stack, &release, &[("authorization", &tes)], "").await;
    assert_eq!((r.status, &r.json["found"]), (200, &json!(true)), "{}", r.json);
    assert_eq!(post(stack, &release, &[("authorization", &tes)], "").await.status, 404, "already released");
    // Only the lease API: the rest of the admin port stays in the pod.
    assert_eq!(get(stack, "/metrics", &[("authorization", &tes)]).await.status, 404);
    assert_eq!(get(stack, "/quota/v1/leases/../../metrics", &[("authorization", &tes)]).await.status, 404);

    // Redis down: compute requests fail closed, everything else is served, audit drops count.
    stack.stop_redis().await.unwrap();
    let r = submit(stack, &alice, 1, &[]).await;
    assert_eq!(r.status, 503, "{}", r.json);
    let r = get(stack, "/api/tools/x", &[("authorization", &alice)]).await;
    assert_eq!((r.status, r.upstream("x-user-id").as_str()), (200, Some("u-alice")));
    eventually("audit drops are counted", Duration::from_secs(10), || async {
        metric(stack, "authz_audit_events_total", "dropped").await > 0
    })
    .await;

    // Redis back (empty): both recover without restarting anything.
    stack.start_redis().await.unwrap();
    eventually("compute requests recover", Duration::from_secs(15), || async {
        submit(stack, &alice, 8, &[]).await.status == 200
    })
    .await;
    let before = metric(stack, "authz_audit_events_total", "written").await;
    eventually("audit recovers", Duration::from_secs(10), || async {
        let _ = get(stack, "/health", &[]).await;
        metric(stack, "authz_audit_events_total", "written").await > before
    })
    .await;
}

async fn check(grpc: u16, auth: &str, gpus: u32) -> Result<String, String> {
    let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{grpc}")).await.unwrap();
    let http = HttpRequest {
        method: "POST".into(),
        path: "/api/tes/v1/tasks".into(),
        headers: [("authorization".to_string(), auth.to_string())].into(),
        raw_body: task(gpus).into_bytes(),
        ..Default::default()
    };
    let req = CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request { http: Some(http), ..Default::default() }),
            ..Default::default()
        }),
    };
    let resp = client.check(req).await.map_err(|s| format!("grpc {:?}", s.code()))?.into_inner();
    match resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok
            .headers
            .iter()
            .filter_map(|h| h.header.as_ref())
            .find(|h| h.key == "x-quota-lease")
            .map(|h| h.value.clone())
            .ok_or_else(|| "allowed without a lease".to_string()),
        Some(HttpResponse::DeniedResponse(d)) => Err(d.body),
        Some(HttpResponse::ErrorResponse(_)) | None => Err("no answer".into()),
    }
}

/// 200 concurrent one-GPU submissions from one user, split over two sidecar processes
/// sharing Redis, against a limit of 8 GPUs: exactly 8 are granted. A release lets the next
/// one in; a lease whose time runs out frees its GPU.
pub async fn two_sidecars_grant_exactly_the_limit(stack: &Stack) {
    let (replica_grpc, _replica_admin, _replica) = stack.start_sidecar_replica().await.unwrap();
    let bob = user("u-bob", "lab-b");
    let ports = [stack.ports.sidecar_grpc, replica_grpc];
    let calls = (0..200).map(|i| {
        let bob = bob.clone();
        let port = ports[i % 2];
        tokio::spawn(async move { check(port, &bob, 1).await })
    });
    let results = futures::future::join_all(calls).await;
    let granted: Vec<String> = results.iter().filter_map(|r| r.as_ref().ok()?.as_ref().ok().cloned()).collect();
    let refused = results.iter().filter(|r| matches!(r, Ok(Err(body)) if body.contains("quota_exceeded"))).count();
    assert_eq!((granted.len(), refused), (8, 192), "{results:?}");

    // A release (gRPC, on the other replica) lets exactly one more in.
    let mut quota = QuotaClient::connect(format!("http://127.0.0.1:{replica_grpc}")).await.unwrap();
    let mut release = tonic::Request::new(ReleaseRequest { lease_id: granted[0].clone() });
    release.metadata_mut().insert("authorization", service("tes").parse().unwrap());
    assert!(quota.release(release).await.unwrap().into_inner().found);
    let mut user_release = tonic::Request::new(ReleaseRequest { lease_id: granted[1].clone() });
    user_release.metadata_mut().insert("authorization", bob.parse().unwrap());
    assert_eq!(quota.release(user_release).await.unwrap_err().code(), tonic::Code::PermissionDenied);
    assert!(check(ports[0], &bob, 1).await.is_ok(), "a released GPU is free");
    assert!(check(ports[1], &bob, 1).await.unwrap_err().contains("quota_exceeded"));

    // A lease renewed to one second, then left to run out, frees its GPU.
    let mut renew = tonic::Request::new(RenewRequest { lease_id: granted[1].clone(), ttl_seconds: 1 });
    renew.metadata_mut().insert("authorization", service("tes").parse().unwrap());
    let renewed = quota.renew(renew).await.unwrap().into_inner();
    assert!(renewed.found && renewed.expires_at_ms > 0);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(check(ports[1], &bob, 1).await.is_ok(), "the expired lease's GPU is free");
    assert!(check(ports[0], &bob, 1).await.unwrap_err().contains("quota_exceeded"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasm_quota_and_audit() {
    let mut stack = Stack::start(options(Mode::Wasm)).await.unwrap();
    one_audit_event_per_request(&stack, true).await;
    two_sidecars_grant_exactly_the_limit(&stack).await;
    leases_through_the_gateway(&mut stack).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ext_authz_quota_and_audit() {
    let mut stack = Stack::start(options(Mode::ExtAuthz)).await.unwrap();
    // `/health` skips ext_authz in this mode, so it has no decision to audit.
    one_audit_event_per_request(&stack, false).await;
    leases_through_the_gateway(&mut stack).await;
}
