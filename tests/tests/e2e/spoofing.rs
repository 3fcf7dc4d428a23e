//! The header-spoofing matrix: every request carries forged identity headers (`X-User-*` in
//! several shapes, `X-Internal-Service`, `X-Quota-Lease`) and a malformed `X-Trace-Id`, on
//! public and protected routes, through every kind of allow, denial and error, with audit
//! failing open and the sidecar, Redis and the auth service away. Required, in both modes: no
//! forged value reaches any upstream (every request the upstreams received is recorded and
//! searched), none is reflected to the client or written to the audit trail, refused
//! requests reach no upstream at all, and every trace id the upstreams see is the gateway's.

use std::collections::BTreeMap;
use std::time::Duration;

use authz_e2e::stack::{Mode, Stack};
use authz_e2e::tokens::{DEV_KID, OTHER_PRIVATE_PEM, sign_rs256, sign_with, user_claims};
use authz_proto::audit::field;
use serde_json::json;

use super::client::{bearer, is_uuid, send};
use super::quota::{self, audit_events, task};

/// Every forged value carries this marker; finding it anywhere downstream is a failure.
const MARK: &str = "SPOOF";

const FORGED: &[(&str, &str)] = &[
    ("x-user-id", "SPOOF-u-admin"),
    ("X-User-Id", "SPOOF-u-root"),
    ("x-user-email", "SPOOF@evil.example"),
    ("x-user-roles", "SPOOF-admin"),
    ("x-user-tenant", "SPOOF-lab"),
    ("x-user-anything", "SPOOF"),
    ("x-internal-service", "SPOOF-billing"),
    ("x-quota-lease", "SPOOF-lease"),
    ("x-trace-id", "SPOOF/../../etc/passwd"),
];

/// One request of the matrix.
struct Case {
    situation: &'static str,
    method: reqwest::Method,
    path: &'static str,
    credential: Option<(&'static str, String)>,
    extra: Vec<(&'static str, &'static str)>,
    body: Option<String>,
    /// The status required.
    status: u16,
    /// Whether it must reach an upstream.
    forwarded: bool,
}

fn case(situation: &'static str, path: &'static str, credential: Option<(&'static str, String)>, status: u16) -> Case {
    let forwarded = status == 200 && path.starts_with("/api/");
    Case { situation, method: reqwest::Method::GET, path, credential, extra: Vec::new(), body: None, status, forwarded }
}

fn compute(situation: &'static str, auth: &str, body: String, status: u16) -> Case {
    Case {
        situation,
        method: reqwest::Method::POST,
        path: "/api/tes/v1/tasks",
        credential: Some(("authorization", auth.to_string())),
        extra: vec![("content-type", "application/json")],
        body: Some(body),
        status,
        forwarded: status == 200,
    }
}

/// One row of the printed matrix.
struct Row {
    situation: &'static str,
    status: u16,
    reached_upstream: bool,
    /// The trace id the client got (the audit event's key).
    trace: String,
}

/// Sends `c` with every forged header and checks what the client got and what the upstreams
/// saw.
async fn run(stack: &Stack, mode: Mode, n: usize, c: Case) -> Row {
    let row_id = format!("row-{n}");
    let mut headers: Vec<(&str, &str)> = FORGED.to_vec();
    headers.push(("x-row", &row_id));
    headers.extend(c.extra.iter().copied());
    if let Some((name, value)) = &c.credential {
        headers.push((name, value));
    }
    let reply = send(stack, c.method.clone(), c.path, &headers, c.body.map(Into::into)).await;
    let what = format!("{mode:?} / {}", c.situation);
    assert_eq!(reply.status, c.status, "{what}: {}", reply.json);
    for (name, value) in &reply.headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(!v.contains(MARK), "{what}: the response reflects a forged header: {name}: {v}");
    }
    assert!(
        !reply.json.to_string().contains(MARK),
        "{what}: the response body reflects a forged value: {}",
        reply.json
    );
    let trace = reply.header("x-trace-id").unwrap_or_default();
    assert!(trace.is_empty() || is_uuid(trace), "{what}: trace id on the response {trace:?}");
    let seen: Vec<_> = {
        let log = stack.seen.lock().unwrap();
        log.iter().filter(|s| s.headers.iter().any(|(k, v)| k == "x-row" && *v == row_id)).cloned().collect()
    };
    assert_eq!(!seen.is_empty(), c.forwarded, "{what}: reached an upstream: {}", !seen.is_empty());
    for s in &seen {
        let user_ids = s.headers.iter().filter(|(k, _)| k == "x-user-id").count();
        assert!(user_ids <= 1, "{what}: {user_ids} x-user-id headers upstream");
        let traces: Vec<&str> = s.headers.iter().filter(|(k, _)| k == "x-trace-id").map(|(_, v)| v.as_str()).collect();
        assert!(traces.len() == 1 && is_uuid(traces[0]), "{what}: trace ids upstream {traces:?}");
    }
    Row { situation: c.situation, status: reply.status, reached_upstream: !seen.is_empty(), trace: trace.to_string() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofing_matrix_wasm() {
    matrix(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofing_matrix_native() {
    matrix(Mode::ExtAuthz).await;
}

async fn matrix(mode: Mode) {
    let native = mode == Mode::ExtAuthz;
    let mut opts = quota::options(mode);
    opts.record_upstream = true;
    if let Some(routes) = opts.routes.as_array_mut() {
        routes.push(json!({"id": "public-docs", "prefix": "/api/workbench/public", "public": true}));
    }
    let mut stack = Stack::start(opts).await.unwrap();
    let mut claims = user_claims("u-real", "real@lab.example", &["user"]);
    claims["lab"] = json!("lab-1");
    let user = bearer(&sign_rs256(&claims, Some(DEV_KID)).unwrap());
    let forged_sig = bearer(&sign_with(&claims, Some(DEV_KID), OTHER_PRIVATE_PEM).unwrap());
    let auth = |v: &str| Some(("authorization", v.to_string()));
    let key = |v: &str| Some(("x-api-key", v.to_string()));
    let mut rows: Vec<Row> = Vec::new();

    // Everything up.
    let up = vec![
        case("public route, no credential", "/api/workbench/public/doc", None, 200),
        case("public route, bad token", "/api/workbench/public/doc", auth(&forged_sig), 200),
        case("/health (answered by Envoy)", "/health", None, 200),
        case(
            "protected, valid token (wasm: verified in the filter; native: by the sidecar)",
            "/api/tools/x",
            auth(&user),
            200,
        ),
        case("protected, API key (sidecar introspection)", "/api/tools/x", key("demo-api-key-bob"), 200),
        case("no credential", "/api/tools/x", None, 401),
        case("forged signature", "/api/tools/x", auth(&forged_sig), 401),
        case("unknown API key", "/api/tools/x", key("no-such-key"), 401),
        case("policy denial (admin rule, user token)", "/api/lims/admin/x", auth(&user), 403),
        compute("compute, granted (lease set by the gateway)", &user, task(1), 200),
        compute("compute, over quota (9 GPUs > 8)", &user, task(9), 403),
        compute("compute, invalid request body", &user, "{\"resources\": {\"cpu_cores\": \"many\"}}".into(), 400),
        compute("compute, body over 1 MiB", &user, format!("{{\"pad\": \"{}\"}}", "x".repeat(1 << 20)), 413),
        Case {
            extra: vec![("x-echo-status", "500")],
            forwarded: true,
            ..case("upstream answers 500", "/api/tools/x", auth(&user), 500)
        },
        case("/auth/verify, valid token", "/auth/verify", auth(&user), 200),
        case("/auth/verify, no credential", "/auth/verify", None, 401),
    ];
    for c in up {
        rows.push(run(&stack, mode, rows.len(), c).await);
    }
    // The identity the gateway set is the real one, once.
    {
        let log = stack.seen.lock().unwrap();
        for s in log.iter().filter(|s| s.path.starts_with("/api/tools/x")) {
            let ids: Vec<&str> = s.headers.iter().filter(|(k, _)| k == "x-user-id").map(|(_, v)| v.as_str()).collect();
            assert!(ids == ["u-real"] || ids == ["u-bob"], "{mode:?}: x-user-id upstream {ids:?}");
        }
    }
    // The audit trail has an event for every one of them, and no forged value.
    let start = std::time::Instant::now();
    let events = loop {
        let events = audit_events(&stack).await;
        let traces: Vec<&str> = events.iter().filter_map(|e| e.get(field::TRACE_ID).map(String::as_str)).collect();
        let missing: Vec<&str> =
            rows.iter().map(|r| r.trace.as_str()).filter(|t| !t.is_empty() && !traces.contains(t)).collect();
        if missing.is_empty() {
            break events;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{mode:?}: no audit event for trace ids {missing:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for e in &events {
        assert!(!e.values().any(|v| v.contains(MARK)), "{mode:?}: a forged value in the audit trail: {e:?}");
    }

    // Redis down: audit fails open (events dropped, requests served), quota fails closed.
    stack.stop_redis().await.unwrap();
    for c in [
        case("Redis down: valid token (audit fails open)", "/api/rag/x", auth(&user), 200),
        compute("Redis down: compute (fails closed)", &user, task(1), 503),
    ] {
        rows.push(run(&stack, mode, rows.len(), c).await);
    }
    stack.start_redis().await.unwrap();

    // The auth service down: a key it must introspect cannot be decided.
    stack.auth.stop().await;
    let c = case("auth service down: new API key", "/api/tools/x", key("demo-api-key-alice"), 503);
    rows.push(run(&stack, mode, rows.len(), c).await);
    stack.auth.restart().await.unwrap();

    // The sidecar down.
    stack.stop_sidecar().await.unwrap();
    let (valid, anonymous) = if native { (503, 503) } else { (200, 401) };
    let cases = vec![
        case(
            "sidecar down: valid token (wasm: local, within revocationStaleAfter)",
            "/api/models/x",
            auth(&user),
            valid,
        ),
        case("sidecar down: no credential", "/api/tools/x", None, anonymous),
        case("sidecar down: API key", "/api/tools/x", key("demo-api-key-bob"), 503),
        compute("sidecar down: compute", &user, task(1), 503),
    ];
    for c in cases {
        rows.push(run(&stack, mode, rows.len(), c).await);
    }

    // Whatever reached an upstream, over the whole run: no forged value anywhere.
    let log = stack.seen.lock().unwrap().clone();
    for s in &log {
        for (k, v) in &s.headers {
            assert!(!v.contains(MARK), "{mode:?}: {} received a forged header {k}: {v}", s.service);
        }
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut table = format!("{mode:?} mode, {} requests, {} reached an upstream\n", rows.len(), log.len());
    table.push_str("| situation | status | reached an upstream |\n|---|---|---|\n");
    for r in &rows {
        *by_status.entry(r.status).or_default() += 1;
        table.push_str(&format!(
            "| {} | {} | {} |\n",
            r.situation,
            r.status,
            if r.reached_upstream { "yes, forged headers removed" } else { "no" }
        ));
    }
    eprintln!("{table}statuses: {by_status:?}");
}
