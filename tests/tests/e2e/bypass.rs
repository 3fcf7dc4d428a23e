//! The bypass matrix: requests shaped as an attacker shapes them, through the gateway's own
//! listener, against every kind of protected rule of the example policy
//! (`authz-sidecar/policy.example.yaml`): role, service-only, lab binding, method plus action
//! token, compute with quota, public next to private. Sent over HTTP/1.1 (raw socket: any path
//! bytes, chunked trailers) and HTTP/2 (h2c, DATA frames and request trailers), in both modes.
//!
//! For each request the echo upstreams record what they received. A case fails if a request
//! its rule should refuse reaches any upstream, if an allowed one arrives with another identity
//! than the caller's, if any forged value (marked `SPOOF`) reaches an upstream, or if a response
//! carries more than one `x-trace-id`. The table is printed (`--nocapture`) and summarised in
//! RELIABILITY.md.

use std::time::Duration;

use authz_e2e::raw_client::{self, RawReply, RawRequest};
use authz_e2e::stack::{Mode, Stack};

use super::quota;

const MARK: &str = "SPOOF";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    H1,
    H2,
}

/// What a case must produce.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Forwarded with this caller's `x-user-id` (`""`: a public route, no identity).
    Allow(&'static str),
    /// Refused with this status, reaching no upstream.
    Refuse(u16),
    /// Refused by Envoy before any filter (a 4xx, a redirect or a reset stream), reaching no
    /// upstream.
    RefuseAny,
}

struct Case {
    class: &'static str,
    what: String,
    req: RawRequest,
    expect: Expect,
    /// Headers the upstream must not receive (beyond the `SPOOF` search).
    absent_upstream: &'static [&'static str],
    /// Only over this protocol (shapes the other cannot carry).
    only: Option<Proto>,
}

mod cases;
mod fixtures;

use cases::cases;
use fixtures::{fixtures, options};

/// One row of the printed table.
struct Row {
    proto: Proto,
    class: &'static str,
    what: String,
    status: u16,
    code: String,
    reached: bool,
}

async fn run(stack: &Stack, mode: Mode, proto: Proto, n: usize, mut c: Case) -> Row {
    let tag = format!("{mode:?}-{proto:?}-{n}");
    c.req.headers.push(("x-case".into(), tag.clone()));
    // Every request also carries forged identity headers in their ordinary spelling.
    c.req.headers.push(("x-user-id".into(), "SPOOF-u-root".into()));
    c.req.headers.push(("x-internal-service".into(), "SPOOF".into()));
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], stack.ports.gateway));
    let reply: RawReply = match proto {
        Proto::H1 => raw_client::h1(addr, &c.req).await,
        Proto::H2 => raw_client::h2(addr, &c.req).await,
    }
    .unwrap_or_else(|e| panic!("{tag} {}: {e:#}", c.what));
    let what = format!("{mode:?} {proto:?} [{}] {}", c.class, c.what);
    // Let a request that slipped through reach the upstream before looking.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let seen: Vec<_> = {
        let log = stack.seen.lock().unwrap();
        log.iter().filter(|s| s.headers.iter().any(|(k, v)| k == "x-case" && *v == tag)).cloned().collect()
    };
    let traces = reply.all("x-trace-id");
    assert!(traces.len() <= 1, "{what}: {} x-trace-id headers on the response: {traces:?}", traces.len());
    match c.expect {
        Expect::Allow(user) => {
            assert_eq!(reply.status, 200, "{what}: {}", String::from_utf8_lossy(&reply.body));
            assert_eq!(seen.len(), 1, "{what}: reached {} upstream requests", seen.len());
            let ids: Vec<&str> =
                seen[0].headers.iter().filter(|(k, _)| k == "x-user-id").map(|(_, v)| v.as_str()).collect();
            let want: Vec<&str> = if user.is_empty() { vec![] } else { vec![user] };
            assert_eq!(ids, want, "{what}: identity upstream");
        }
        Expect::Refuse(status) => {
            assert_eq!(reply.status, status, "{what}: {}", String::from_utf8_lossy(&reply.body));
            assert!(seen.is_empty(), "{what}: a refused request reached {}", seen[0].path);
        }
        Expect::RefuseAny => {
            assert!(
                !(200..300).contains(&reply.status),
                "{what}: {} {}",
                reply.status,
                String::from_utf8_lossy(&reply.body)
            );
            assert!(seen.is_empty(), "{what}: a refused request reached {}", seen[0].path);
        }
    }
    for s in &seen {
        for (k, v) in &s.headers {
            assert!(!v.contains(MARK), "{what}: a forged value reached {}: {k}: {v}", s.service);
            assert!(!c.absent_upstream.contains(&k.as_str()), "{what}: {k} reached {}", s.service);
        }
    }
    Row { proto, class: c.class, what: c.what, status: reply.status, code: reply.error(), reached: !seen.is_empty() }
}

async fn matrix(mode: Mode) {
    let stack = Stack::start(options(mode)).await.unwrap();
    let mut rows = Vec::new();
    for proto in [Proto::H1, Proto::H2] {
        // Fresh single-use tokens and revocations for each protocol.
        let fx = fixtures(&stack).await;
        // The revocations have reached the filters (a revoked session's token is refused).
        tokio::time::sleep(Duration::from_millis(500)).await;
        for c in cases(&fx) {
            if c.only.is_some_and(|p| p != proto) {
                continue;
            }
            let n = rows.len();
            rows.push(run(&stack, mode, proto, n, c).await);
        }
    }
    // The audit trail records the method as sent, an extension method included.
    let start = std::time::Instant::now();
    loop {
        let events = quota::audit_events(&stack).await;
        if events.iter().any(|e| e.get("method").map(String::as_str) == Some("PROPFIND")) {
            // A refusal after authentication names the caller, whichever host decided.
            let after_auth =
                ["missing_role", "tenant_mismatch", "service_only", "action_token_used", "action_token_revoked"];
            for e in events.iter().filter(|e| after_auth.contains(&e.get("reason").map_or("", String::as_str))) {
                assert!(
                    e.get("user_id").is_some_and(|u| !u.is_empty()),
                    "{mode:?}: a refusal without its caller: {e:?}"
                );
            }
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{mode:?}: no audit event with method PROPFIND");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("\nbypass matrix, {mode:?} mode ({} requests):", rows.len());
    println!("| proto | class | request | status | code | reached upstream |");
    println!("|---|---|---|---|---|---|");
    for r in &rows {
        println!("| {:?} | {} | {} | {} | {} | {} |", r.proto, r.class, r.what, r.status, r.code, r.reached);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_matrix_wasm() {
    matrix(Mode::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bypass_matrix_native() {
    matrix(Mode::ExtAuthz).await;
}
