//! The audit trail, request by request: exactly one event per request, every decision path.

use std::collections::BTreeMap;
use std::time::Duration;

use authz_e2e::stack::Stack;

use super::super::client::{is_uuid, send};
use super::{audit_events, cli, eventually, task, user};

/// One request of the audit check, and the status it must get.
struct Case {
    name: &'static str,
    method: reqwest::Method,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Option<String>,
    status: u16,
}

/// Exactly one audit event per request, whose trace id is the one the upstream saw (or, for
/// a refusal, the one the client got back); every decision path included.
pub async fn one_audit_event_per_request(stack: &Stack, include_public: bool) {
    let carol = user("u-carol", "lab-c");
    let ua = format!("audit-test-{}", uuid::Uuid::new_v4());
    let (get, post) = (reqwest::Method::GET, reqwest::Method::POST);
    let case =
        |name, method: &reqwest::Method, path, headers: &[(&'static str, &str)], body: Option<String>, status| {
            let mut headers: Vec<(&'static str, String)> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
            headers.push(("user-agent", ua.clone()));
            Case { name, method: method.clone(), path, headers, body, status }
        };
    let mut cases = vec![
        case("allowed", &get, "/api/tools/x?secret=1", &[("authorization", &carol)], None, 200),
        case("no credential", &get, "/api/tools/x", &[], None, 401),
        case("bad token", &get, "/api/tools/x", &[("authorization", "Bearer x.y.z")], None, 401),
        case("forbidden", &get, "/api/lims/admin/x", &[("authorization", &carol)], None, 403),
        case("api key", &get, "/api/rag/q", &[("x-api-key", "demo-api-key-bob")], None, 200),
        case("bad api key", &get, "/api/rag/q", &[("x-api-key", "nope")], None, 401),
        case(
            "compute",
            &post,
            "/api/tes/v1/tasks",
            &[("authorization", &carol), ("x-trace-id", "client-chosen-bad")],
            Some(task(1)),
            200,
        ),
        case("over quota", &post, "/api/tes/v1/tasks", &[("authorization", &carol)], Some(task(9)), 403),
        case("spoofed", &get, "/api/models", &[("x-user-id", "u-admin")], None, 401),
    ];
    if include_public {
        cases.push(case("public", &get, "/health", &[], None, 200));
    }
    let mut expected = BTreeMap::new();
    for Case { name, method, path, headers, body, status } in &cases {
        let refs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = send(stack, method.clone(), path, &refs, body.clone().map(reqwest::Body::from)).await;
        assert_eq!(r.status, *status, "{name}: {}", r.json);
        let trace = match r.upstream("x-trace-id").as_str() {
            Some(t) => t.to_string(),
            None => r.header("x-trace-id").unwrap_or_default().to_string(),
        };
        assert!(is_uuid(&trace), "{name}: trace id {trace:?}");
        if let Some(seen) = r.upstream("x-trace-id").as_str() {
            assert_eq!(r.header("x-trace-id"), Some(seen), "{name}: the client gets the upstream's trace id");
        }
        expected.insert(trace, (*name, *status));
    }
    let ours = |events: Vec<BTreeMap<String, String>>| -> Vec<BTreeMap<String, String>> {
        events.into_iter().filter(|e| e.get("user_agent") == Some(&ua)).collect()
    };
    eventually("every request's audit event arrives", Duration::from_secs(10), || async {
        ours(audit_events(stack).await).len() >= expected.len()
    })
    .await;
    // Nothing more arrives late.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let events = ours(audit_events(stack).await);
    assert_eq!(events.len(), expected.len(), "one event per request: {events:#?}");
    for e in &events {
        let trace = e.get("trace_id").cloned().unwrap_or_default();
        let Some((name, status)) = expected.get(&trace) else { panic!("event with an unknown trace id: {e:?}") };
        assert_eq!(e.get("status").map(String::as_str), Some(status.to_string().as_str()), "{name}: {e:?}");
        let decision = if *status < 400 { "allow" } else { "deny" };
        assert_eq!(e.get("decision").map(String::as_str), Some(decision), "{name}: {e:?}");
        assert!(e.get("decision_id").is_some_and(|d| !d.is_empty()), "{name}: {e:?}");
        assert!(!e.get("path").is_some_and(|p| p.contains('?')), "{name}: query strings are dropped");
        assert!(
            e.values().all(|v| !v.contains("Bearer") && !v.contains("demo-api-key")),
            "{name}: no credential: {e:?}"
        );
        match *name {
            "allowed" | "compute" => {
                assert_eq!(e.get("user_id").map(String::as_str), Some("u-carol"), "{name}: {e:?}");
                assert_eq!(e.get("tenant").map(String::as_str), Some("lab-c"), "{name}: {e:?}");
                assert_eq!(e.get("credential").map(String::as_str), Some("bearer"), "{name}: {e:?}");
                assert_eq!(e.get("token_fp").map(String::len), Some(12), "{name}: {e:?}");
            }
            "forbidden" => assert_eq!(e.get("rule").map(String::as_str), Some("lims-admin"), "{e:?}"),
            "no credential" => assert_eq!(e.get("reason").map(String::as_str), Some("missing_credential"), "{e:?}"),
            "over quota" => {
                assert_eq!(e.get("reason").map(String::as_str), Some("quota_exceeded"), "{e:?}");
                assert_eq!(e.get("user_id").map(String::as_str), Some("u-carol"), "who was refused: {e:?}");
            }
            "api key" => assert_eq!(e.get("credential").map(String::as_str), Some("api_key"), "{e:?}"),
            _ => {}
        }
        if *name == "compute" {
            assert!(e.get("quota_lease").is_some_and(|l| is_uuid(l)), "{e:?}");
            assert_eq!(e.get("rule").map(String::as_str), Some("tes-submit"), "{e:?}");
        }
    }
    // Operators read the same events.
    let (ok, out) = cli(stack, &["audit", "tail", "--json", "--count", "1000", "--decision", "deny"]);
    assert!(ok, "{out}");
    let denials = out.lines().filter(|l| l.contains(&ua)).count();
    assert_eq!(denials, expected.values().filter(|(_, s)| *s >= 400).count(), "{out}");
}
