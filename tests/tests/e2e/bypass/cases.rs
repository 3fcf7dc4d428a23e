//! The requests of the bypass matrix, and the credentials they use.

use authz_e2e::raw_client::RawRequest;
use serde_json::json;

use super::fixtures::{Fixtures, action_token};
use super::{Case, Expect, Proto};
use crate::e2e::quota::task;

fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> RawRequest {
    RawRequest {
        method: method.into(),
        path: path.into(),
        headers: headers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
        ..RawRequest::default()
    }
}

fn case(class: &'static str, what: impl Into<String>, req: RawRequest, expect: Expect) -> Case {
    Case { class, what: what.into(), req, expect, absent_upstream: &[], only: None }
}

/// A DELETE on the action-token rule with this bearer token and action token, which must be
/// refused (401).
fn delete(what: &'static str, path: &str, bearer: &str, action: &str) -> Case {
    let r = req("DELETE", path, &[("authorization", bearer), ("x-action-token", action)]);
    case("action-token", what, r, Expect::Refuse(401))
}

/// Every case, with fresh single-use tokens (each mode and protocol gets its own).
pub(super) fn cases(fixtures: &Fixtures) -> Vec<Case> {
    let bob = fixtures.bob.as_str();
    let alice = fixtures.alice.as_str();
    let svc = fixtures.service.as_str();
    let unknown_kid = fixtures.unknown_kid.as_str();
    let auth = |v: &str| vec![("authorization".to_string(), v.to_string())];
    let with = |mut r: RawRequest, h: Vec<(String, String)>| {
        r.headers.extend(h);
        r
    };
    let json_body = |r: RawRequest, chunks: Vec<Vec<u8>>, trailers: &[(&str, &str)]| RawRequest {
        body: chunks,
        trailers: trailers.iter().map(|(k, v)| ((*k).to_string(), (*v).to_string())).collect(),
        ..with(r, vec![("content-type".into(), "application/json".into())])
    };
    let trailers: &[(&str, &str)] = &[("x-checksum", "1"), ("x-user-id", "SPOOF-trailer")];
    let split = |s: String| -> Vec<Vec<u8>> {
        let b = s.into_bytes();
        let mid = b.len() / 2;
        vec![b[..mid].to_vec(), b[mid..].to_vec()]
    };
    let mut v = vec![
        // Controls: what each rule allows arrives with the caller's identity.
        case("control", "public route, anonymous", req("GET", "/api/rag/public/doc", &[]), Expect::Allow("")),
        case(
            "control",
            "lab binding, own lab",
            with(req("GET", "/api/lims/labs/lab-a/s/1", &[]), auth(bob)),
            Expect::Allow("u-bob"),
        ),
        case(
            "control",
            "service-only, service token",
            with(req("GET", "/api/tes/internal/q", &[]), auth(svc)),
            Expect::Allow("svc-tes"),
        ),
        case(
            "control",
            "compute within quota, body in chunks then trailers",
            json_body(with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob)), split(task(1)), trailers),
            Expect::Allow("u-bob"),
        ),
        case(
            "control",
            "method + action token, first use",
            with(
                req("DELETE", "/api/lims/samples/1", &[]),
                vec![("authorization".into(), alice.into()), ("x-action-token".into(), fixtures.action.clone())],
            ),
            Expect::Allow("u-alice"),
        ),
        case(
            "control",
            "extension method PROPFIND",
            with(req("PROPFIND", "/api/tools/x", &[]), auth(bob)),
            Expect::Allow("u-bob"),
        ),
        // Trailers release nothing: every request the filter sends to the sidecar, with a body
        // in chunks and trailers.
        case(
            "trailers",
            "anonymous junk API key to a role rule",
            json_body(
                req("POST", "/api/models/admin/x", &[("x-api-key", "junk-key-SPOOF")]),
                split("{}".repeat(8)),
                trailers,
            ),
            Expect::Refuse(401),
        ),
        case(
            "trailers",
            "valid API key (no admin role) to a role rule",
            json_body(
                req("POST", "/api/models/admin/x", &[("x-api-key", "demo-api-key-bob")]),
                split("{}".repeat(8)),
                trailers,
            ),
            Expect::Refuse(401),
        ),
        case(
            "trailers",
            "unknown kid to a role rule",
            json_body(
                with(req("POST", "/api/models/admin/x", &[]), auth(unknown_kid)),
                split("{}".repeat(8)),
                trailers,
            ),
            Expect::Refuse(401),
        ),
        case(
            "trailers",
            "compute over quota (9 GPUs > 8)",
            json_body(with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob)), split(task(9)), trailers),
            Expect::Refuse(403),
        ),
        case(
            "trailers",
            "compute, anonymous",
            json_body(req("POST", "/api/tes/v1/tasks", &[]), split(task(1)), trailers),
            Expect::Refuse(401),
        ),
        case(
            "trailers",
            "service-only rule, API key (sidecar)",
            json_body(
                req("POST", "/api/tes/internal/x", &[("x-api-key", "demo-api-key-bob")]),
                split("{}".into()),
                trailers,
            ),
            Expect::Refuse(403),
        ),
        case(
            "trailers",
            "trailers without a body on a compute route",
            RawRequest {
                trailers: vec![("x-user-id".into(), "SPOOF".into())],
                ..with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob))
            },
            Expect::Refuse(400),
        ),
        case(
            "trailers",
            "compute body over 1 MiB in chunks, then trailers",
            json_body(
                with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob)),
                vec![vec![b' '; 600 << 10], vec![b' '; 600 << 10]],
                trailers,
            ),
            Expect::Refuse(413),
        ),
        // Dot segments and `;` after decoding.
        case(
            "dot-segments",
            "%2e%2e;/ to a role rule",
            with(req("GET", "/api/models/x/%2e%2e;/admin/x", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "..;/ to a role rule",
            with(req("GET", "/api/models/x/..;/admin/x", &[]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "dot-segments",
            "%2e%2e/ to a role rule",
            with(req("GET", "/api/models/x/%2e%2e/admin/x", &[]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "dot-segments",
            "%2e%2e;/ to service-only",
            with(req("GET", "/api/tes/x/%2e%2e;/internal/q", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "%2e%2e;/ to another lab",
            with(req("GET", "/api/lims/labs/lab-a/%2e%2e;/lab-b/s/1", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "%2e%2e;/ to a compute route",
            json_body(
                with(req("POST", "/api/tes/v1/x/%2e%2e;/tasks", &[]), auth(bob)),
                vec![task(9).into_bytes()],
                &[],
            ),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "%2e%2e;/ from a public prefix",
            req("GET", "/api/rag/public/%2e%2e;/private/x", &[]),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "double-encoded %252e%252e/",
            with(req("GET", "/api/models/x/%252e%252e/admin/x", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "dot-segments",
            "encoded slash %2f..%2f",
            with(req("GET", "/api/models/x%2f..%2fadmin/x", &[]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "path-parameters",
            "admin;x",
            with(req("GET", "/api/models/admin;x/y", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "path-parameters",
            "compute route tasks;x (no quota)",
            json_body(with(req("POST", "/api/tes/v1/tasks;x", &[]), auth(bob)), vec![task(9).into_bytes()], &[]),
            Expect::Refuse(400),
        ),
        case(
            "path-parameters",
            "DELETE samples;x/1 (no action token)",
            with(req("DELETE", "/api/lims/samples;x/1", &[]), auth(alice)),
            Expect::Refuse(400),
        ),
        case(
            "path-parameters",
            "encoded %3b",
            with(req("GET", "/api/models/admin%3bx/y", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        // Case: protected literals match in any case.
        case("case", "ADMIN", with(req("GET", "/api/models/ADMIN/x", &[]), auth(bob)), Expect::Refuse(403)),
        case("case", "%41dmin", with(req("GET", "/api/models/%41dmin/x", &[]), auth(bob)), Expect::Refuse(403)),
        case(
            "case",
            "INTERNAL (service-only)",
            with(req("GET", "/api/tes/INTERNAL/q", &[]), auth(bob)),
            Expect::Refuse(403),
        ),
        case(
            "case",
            "LABS (lab binding)",
            with(req("GET", "/api/lims/LABS/lab-b/s/1", &[]), auth(bob)),
            Expect::Refuse(403),
        ),
        case(
            "case",
            "Samples with DELETE (action token)",
            with(req("DELETE", "/api/lims/Samples/1", &[]), auth(alice)),
            Expect::Refuse(401),
        ),
        case("case", "PUBLIC is not public", req("GET", "/api/rag/PUBLIC/doc", &[]), Expect::Refuse(401)),
        // Suffixes and trailing characters that Spring, IIS or Windows drop.
        case(
            "suffix",
            "admin.json (Spring suffix match)",
            with(req("GET", "/api/models/admin.json", &[]), auth(bob)),
            Expect::Refuse(403),
        ),
        case(
            "suffix",
            "internal.xml (service-only)",
            with(req("GET", "/api/tes/internal.xml", &[]), auth(bob)),
            Expect::Refuse(403),
        ),
        case(
            "suffix",
            "admin. (trailing dot)",
            with(req("GET", "/api/models/admin./x", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "suffix",
            "admin%20 (trailing space)",
            with(req("GET", "/api/models/admin%20/x", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        // Identity headers with underscores.
        case(
            "underscores",
            "X_User_Id",
            with(req("GET", "/api/tools/x", &[("X_User_Id", "SPOOF-u-admin")]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "underscores",
            "X_User_Roles",
            with(req("GET", "/api/tools/x", &[("X_User_Roles", "SPOOF-admin")]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "underscores",
            "X_Internal_Service",
            with(req("GET", "/api/tools/x", &[("X_Internal_Service", "SPOOF")]), auth(bob)),
            Expect::RefuseAny,
        ),
        case(
            "underscores",
            "X-Quota_Lease on compute",
            json_body(
                with(req("POST", "/api/tes/v1/tasks", &[("X-Quota_Lease", "SPOOF")]), auth(bob)),
                vec![task(1).into_bytes()],
                &[],
            ),
            Expect::RefuseAny,
        ),
        // Method overrides.
        Case {
            absent_upstream: &["x-http-method-override", "x-http-method", "x-method-override"],
            ..case(
                "method-override",
                "POST with X-HTTP-Method-Override: DELETE (headers removed)",
                with(
                    req(
                        "POST",
                        "/api/lims/samples/1",
                        &[
                            ("X-HTTP-Method-Override", "DELETE"),
                            ("X-HTTP-Method", "DELETE"),
                            ("X-Method-Override", "DELETE"),
                        ],
                    ),
                    auth(bob),
                ),
                Expect::Allow("u-bob"),
            )
        },
        case(
            "method-override",
            "?_method=DELETE",
            with(req("POST", "/api/lims/samples/1?_method=DELETE", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "method-override",
            "?%5Fmethod=delete",
            with(req("POST", "/api/lims/samples/1?x=1&%5Fmethod=delete", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        case(
            "method-override",
            "?x=1;_method=DELETE (`;` as a separator)",
            with(req("POST", "/api/lims/samples/1?x=1;_method=DELETE", &[]), auth(bob)),
            Expect::Refuse(400),
        ),
        // Action tokens.
        delete("the same action token again", "/api/lims/samples/2", alice, &fixtures.action),
        delete(
            "foreign issuer",
            "/api/lims/samples/1",
            alice,
            &action_token("u-alice", json!({"iss": "https://evil.example"})),
        ),
        delete(
            "foreign audience",
            "/api/lims/samples/1",
            alice,
            &action_token("u-alice", json!({"aud": "another-api"})),
        ),
        delete("its session logged out", "/api/lims/samples/1", alice, &fixtures.logged_out_action),
        delete("after log out everywhere", "/api/lims/samples/1", &fixtures.carol, &fixtures.carol_old_action),
        // Duplicate keys in a compute body.
        case(
            "json-duplicates",
            "gpu named twice",
            json_body(
                with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob)),
                vec![br#"{"resources":{"backend_parameters":{"gpu":"9","gpu":"0"}}}"#.to_vec()],
                &[],
            ),
            Expect::Refuse(400),
        ),
        case(
            "json-duplicates",
            "resources named twice",
            json_body(
                with(req("POST", "/api/tes/v1/tasks", &[]), auth(bob)),
                vec![br#"{"resources":{"backend_parameters":{"gpu":"9"}},"resources":{}}"#.to_vec()],
                &[],
            ),
            Expect::Refuse(400),
        ),
        // Whitespace in identity.
        case(
            "whitespace",
            "sub with a trailing space",
            with(req("GET", "/api/tools/x", &[]), auth(&fixtures.spaced_sub)),
            Expect::Refuse(401),
        ),
        case(
            "whitespace",
            "role \" admin\" is not admin",
            with(req("GET", "/api/lims/labs/lab-a/s/1", &[]), auth(&fixtures.spaced_role)),
            Expect::Refuse(403),
        ),
        Case {
            absent_upstream: &["x-forwarded-user", "x-remote-user", "remote-user", "x-auth-request-user"],
            ..case(
                "foreign-identity",
                "X-Forwarded-User / X-Remote-User / Remote-User / X-Auth-Request-User removed",
                with(
                    req(
                        "GET",
                        "/api/tools/x",
                        &[
                            ("X-Forwarded-User", "SPOOF-root"),
                            ("X-Remote-User", "SPOOF-root"),
                            ("Remote-User", "SPOOF-root"),
                            ("X-Auth-Request-User", "SPOOF-root"),
                        ],
                    ),
                    auth(bob),
                ),
                Expect::Allow("u-bob"),
            )
        },
        // URL overrides and client addresses.
        Case {
            absent_upstream: &["x-original-url", "x-rewrite-url", "x-envoy-original-path"],
            ..case(
                "url-override",
                "X-Original-URL / X-Rewrite-URL / X-Envoy-Original-Path removed",
                with(
                    req(
                        "GET",
                        "/api/tools/x",
                        &[
                            ("X-Original-URL", "/api/models/admin"),
                            ("X-Rewrite-URL", "/admin"),
                            ("X-Envoy-Original-Path", "/admin"),
                        ],
                    ),
                    auth(bob),
                ),
                Expect::Allow("u-bob"),
            )
        },
    ];
    // Shapes only a raw HTTP/1.1 socket can send (HTTP/2 forbids them in `:path`).
    v.push(Case {
        only: Some(Proto::H1),
        ..case(
            "path-characters",
            "backslash ..\\",
            with(req("GET", "/api/models/x\\..\\admin/x", &[]), auth(bob)),
            Expect::RefuseAny,
        )
    });
    v
}
