//! Property: a request gets the same verdict and the same audit record whichever mode decides
//! it: the wasm filter (its own request code on a recording host, calling out to a sidecar
//! when it must) or the sidecar alone (as Envoy's native ext_authz asks it). Both sidecars run
//! the real `Check` on the in-memory backends; the filter's worker gets exactly what a control
//! stream would push. Generated: credentials of every kind (bearer tokens valid, expired,
//! tampered, from a foreign issuer, API keys known, unknown and malformed, two at once, a
//! second provider's tokens in its own header, and its issuer forged with the default keys),
//! revocations, action tokens, routes of every kind, hostile paths, and sequences of requests
//! (single-use action tokens and quota leases have state), and nginx's `auth_request` asking
//! `/auth/verify` about an original request (`X-Original-URI`, well formed or not). Records are compared field by
//! field; only `decider` and the random `decision_id` may differ.

// Test fixtures may fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use authz_core::revocation::{Revocation, RevocationSet};
use authz_filter::config::Settings;
use authz_filter::control::ControlState;
use authz_filter::host::fake::FakeHost;
use authz_filter::http::Http;
use authz_filter::metrics::Metrics;
use authz_filter::worker::Worker;
use authz_sidecar::backend::memory::MemoryAuth;
use authz_sidecar::check::testing::InMemorySidecar;
use envoy_types::ext_authz::v3::pb::{CheckRequest, CheckResponse, HttpResponse};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request as AttrRequest};
use envoy_types::pb::google::protobuf::value::Kind;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use prost::Message;
use proxy_wasm::types::Action;
use serde_json::json;

const SECRET: &str = "agreement-test-secret-0123456789abcdef";
/// The second provider's key (inline in its configuration).
const PARTNER_SECRET: &str = "agreement-partner-secret-0123456789";
const PARTNER: &str = "https://partner.test";
const ISSUER: &str = "https://auth.test";
const TRACE: &str = "0b7a6c3e-2d4f-4e1a-9c8b-7f6e5d4c3b2a";
const POLICY: &str = r#"
defaultAction: deny
routes:
  - {id: open, path: /open, public: true}
  - {id: tools, prefix: /api/tools}
  - {id: admin, prefix: /api/admin, rolesAnyOf: [admin]}
  - {id: lab, template: "/api/labs/{lab}/**", bind: {lab: labs}}
  - {id: session, prefix: /api/session, requireSession: true}
  - {id: delete, prefix: /api/delete, methods: [DELETE], action: delete}
  - {id: rego, prefix: /api/rego, rego: data.gw.allow}
  - {id: tes, prefix: /ga4gh/tes, methods: [POST], quota: {resources: headers}}
  - {id: partner, prefix: /api/partner, providers: [partner]}
  - {id: either, prefix: /api/either, providers: [default, partner]}
  - {id: services, prefix: /api/services, providers: [partner], serviceOnly: true}
regoModules:
  gw.rego: |
    package gw
    default allow := false
    allow if input.identity.user_id == "alice"
"#;
const SETTINGS: &str = "publicPaths: [/health]\njwt:\n  issuers: [\"https://auth.test\"]\n  audiences: [gateway]\n  \
                        claimToHeaders: [{claim: lab, header: x-user-lab}, {claim: labs, header: x-user-labs}]\n  \
                        tokenSources: [{cookie: access_token}]\n\
                        apiKeys:\n  format: {prefix: ak-}\ntenantClaim: lab\nquota:\n  perUser: {gpus: 1}\n\
                        providers:\n  - name: partner\n    issuer: https://partner.test\n    audiences: [gateway]\n    \
                        keys: {inline: {keys: [{kty: oct, alg: HS256, k: YWdyZWVtZW50LXBhcnRuZXItc2VjcmV0LTAxMjM0NTY3ODk}]}}\n    \
                        tokenSources: [{header: x-partner-token}]\n    serviceClaim: svc_name\n    \
                        claimToHeaders: [{claim: labs, header: x-user-labs}]\n";
/// Requests as clients make them (the method a route expects), and some that no route expects.
const TARGETS: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/open"),
    ("GET", "/api/tools/x"),
    ("POST", "/api/tools/x"),
    ("GET", "/api/TOOLS/x"),
    ("GET", "/api/admin/users"),
    ("GET", "/api/labs/l1/data"),
    ("GET", "/api/labs/l2/data"),
    ("GET", "/api/session/me"),
    ("DELETE", "/api/delete/7"),
    ("DELETE", "/api/delete/7"),
    ("GET", "/api/delete/7"),
    ("GET", "/api/rego/q"),
    ("POST", "/ga4gh/tes/v1/tasks"),
    ("POST", "/ga4gh/tes/v1/tasks"),
    ("GET", "/elsewhere"),
    ("GET", "/api/partner/x"),
    ("GET", "/api/either/x"),
    ("GET", "/api/services/x"),
    ("GET", "/api/tools/..;/admin"),
    ("GET", "/api/tools/%2e%2e/admin"),
    ("POST", "/api/delete/7?_method=DELETE"),
];

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(claims: &serde_json::Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
}

/// A user token: who, roles, labs, and what is wrong with it (0: nothing).
#[derive(Debug, Clone)]
struct UserToken {
    sub: &'static str,
    roles: Vec<&'static str>,
    labs: Vec<&'static str>,
    flaw: u8,
}

impl UserToken {
    fn sign(&self, now: u64) -> String {
        self.sign_as(now, ISSUER, SECRET)
    }

    /// Signed by `issuer` with `secret`; it names a service (`svc` for the default provider,
    /// `svc_name` for the partner's `serviceClaim`) when its subject is `bob`.
    fn sign_as(&self, now: u64, issuer: &str, secret: &str) -> String {
        let mut c = json!({
            "sub": self.sub, "roles": self.roles, "labs": self.labs, "lab": self.labs.first(),
            "iss": issuer, "aud": "gateway", "exp": now + 600, "iat": now - 10,
            "sid": format!("s-{}", self.sub), "jti": format!("j-{}", self.sub),
        });
        if self.sub == "bob" {
            c["svc"] = json!("billing");
            c["svc_name"] = json!("partner-sync");
        }
        match self.flaw {
            1 => c["exp"] = json!(now - 600),
            2 => c["iss"] = json!("https://evil.test"),
            3 => c["aud"] = json!("elsewhere"),
            _ => {}
        }
        let t = sign(&c, secret);
        if self.flaw == 4 { format!("{t}x") } else { t }
    }
}

#[derive(Debug, Clone)]
enum Credential {
    None,
    Bearer(UserToken),
    ApiKey(&'static str),
    Basic,
    Both(UserToken),
    Garbage,
    /// The token in the `access_token` cookie (a `tokenSources` entry), next to another cookie.
    Cookie(UserToken),
    /// The partner provider's token: in `Authorization`, in its own `x-partner-token` header,
    /// or with its issuer but the default provider's key.
    Partner(UserToken),
    PartnerHeader(UserToken),
    PartnerForged(UserToken),
}

/// `X-Action-Token`: none, right, for another action, for another user, expired.
type ActionKind = u8;

#[derive(Debug, Clone)]
struct Req {
    method: &'static str,
    path: &'static str,
    credential: Credential,
    action: ActionKind,
    /// Asked through `/auth/verify`: an index into [`ORIGINALS`] (0: a request of its own).
    original: u8,
}

/// What nginx may ask about at `/auth/verify`: (`X-Original-URI`, `X-Original-Method`).
const ORIGINALS: &[(&str, &str)] = &[
    ("", ""),
    ("/api/admin/users", "GET"),
    ("//api//tools/x", "POST"),
    ("/api/%61dmin/users", "GET"),
    ("/api/tools/..;/admin", "GET"),
    ("/api/%zz", "GET"),
    ("/api/tools/x", "get"),
    ("/api/tools%2F..%2Fadmin/users", "GET"),
];

fn user_token() -> impl Strategy<Value = UserToken> {
    (
        prop::sample::select(&["alice", "bob"][..]),
        prop::sample::subsequence(&["admin", "user"][..], 0..=2),
        prop::sample::subsequence(&["l1", "l2"][..], 0..=2),
        prop::sample::select(&[0u8, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4][..]),
    )
        .prop_map(|(sub, roles, labs, flaw)| UserToken { sub, roles, labs, flaw })
}

fn credential() -> impl Strategy<Value = Credential> {
    prop_oneof![
        1 => Just(Credential::None),
        6 => user_token().prop_map(Credential::Bearer),
        2 => prop::sample::select(&["ak-known", "ak-unknown", "junk"][..]).prop_map(Credential::ApiKey),
        1 => Just(Credential::Basic),
        1 => user_token().prop_map(Credential::Both),
        1 => Just(Credential::Garbage),
        2 => user_token().prop_map(Credential::Cookie),
        2 => user_token().prop_map(Credential::Partner),
        1 => user_token().prop_map(Credential::PartnerHeader),
        1 => user_token().prop_map(Credential::PartnerForged),
    ]
}

fn req() -> impl Strategy<Value = Req> {
    (
        prop::sample::select(TARGETS),
        credential(),
        prop::sample::select(&[0u8, 1, 1, 1, 2, 3, 4][..]),
        prop::sample::select(&[0u8, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7][..]),
    )
        .prop_map(|((method, path), credential, action, original)| Req {
            method,
            path,
            credential,
            action,
            original,
        })
}

/// The request's headers as the client sends them (the same for both modes).
fn headers(r: &Req, now: u64) -> Vec<(String, String)> {
    let mut h = vec![
        (":method".to_string(), r.method.to_string()),
        (":path".to_string(), r.path.to_string()),
        (":authority".to_string(), "gateway.test".to_string()),
        ("x-trace-id".to_string(), TRACE.to_string()),
        ("x-user-id".to_string(), "mallory".to_string()),
        ("x-user-lab".to_string(), "spoofed-lab".to_string()),
        ("x-compute-gpus".to_string(), "1".to_string()),
    ];
    if let Some((uri, method)) = ORIGINALS.get(usize::from(r.original)).filter(|_| r.original > 0) {
        h[0].1 = "GET".into();
        h[1].1 = "/auth/verify".into();
        h.push(("x-original-uri".into(), uri.to_string()));
        h.push(("x-original-method".into(), method.to_string()));
    }
    let user = match &r.credential {
        Credential::None => None,
        Credential::Bearer(t) => {
            h.push(("authorization".into(), format!("Bearer {}", t.sign(now))));
            Some(t.sub)
        }
        Credential::ApiKey(k) => {
            h.push(("x-api-key".into(), k.to_string()));
            None
        }
        Credential::Basic => {
            h.push(("authorization".into(), "Basic YWxpY2U6cHc=".into()));
            None
        }
        Credential::Both(t) => {
            h.push(("authorization".into(), format!("Bearer {}", t.sign(now))));
            h.push(("x-api-key".into(), "ak-known".into()));
            Some(t.sub)
        }
        Credential::Garbage => {
            h.push(("authorization".into(), "Bearer e30.e30.".into()));
            None
        }
        Credential::Cookie(t) => {
            h.push(("cookie".into(), format!("theme=dark; access_token={}", t.sign(now))));
            Some(t.sub)
        }
        Credential::Partner(t) => {
            h.push(("authorization".into(), format!("Bearer {}", t.sign_as(now, PARTNER, PARTNER_SECRET))));
            Some(t.sub)
        }
        Credential::PartnerHeader(t) => {
            h.push(("x-partner-token".into(), t.sign_as(now, PARTNER, PARTNER_SECRET)));
            Some(t.sub)
        }
        Credential::PartnerForged(t) => {
            h.push(("authorization".into(), format!("Bearer {}", t.sign_as(now, PARTNER, SECRET))));
            Some(t.sub)
        }
    };
    let sub = user.unwrap_or("alice");
    let action = |name: &str, sub: &str, exp: u64, jti: &str| {
        sign(&json!({"sub": sub, "action": name, "iss": ISSUER, "aud": "gateway", "exp": exp, "jti": jti}), SECRET)
    };
    let token = match r.action {
        1 => Some(action("delete", sub, now + 60, "a-1")),
        2 => Some(action("rename", sub, now + 60, "a-2")),
        3 => Some(action("delete", "someone-else", now + 60, "a-3")),
        4 => Some(action("delete", sub, now - 600, "a-4")),
        _ => None,
    };
    if let Some(t) = token {
        h.push(("x-action-token".into(), t));
    }
    h
}

#[path = "agreement/modes.rs"]
mod modes;

use modes::{envoy_check_request, sidecar, through_filter, verdict_of, worker_for};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn the_filter_and_the_sidecar_decide_and_audit_alike(
        requests in prop::collection::vec(req(), 1..5),
        revoke_alice_session in prop::bool::weighted(0.2),
        revoke_bob in prop::bool::weighted(0.2),
        alice_session_alive in any::<bool>(),
    ) {
        let now = now();
        let mut revoked = Vec::new();
        if revoke_alice_session {
            revoked.push(Revocation::Session { sid: "s-alice".into(), expires_at: now + 600 });
        }
        if revoke_bob {
            revoked.push(Revocation::User { sub: "bob".into(), before: now + 1, expires_at: now + 600 });
        }
        let all: Vec<Vec<(String, String)>> = requests.iter().map(|r| headers(r, now)).collect();
        // Sessions are alive per token: alice's bearer tokens in this case, when chosen.
        let alive: Vec<String> = if alice_session_alive {
            all.iter().flatten().filter(|(k, v)| k == "authorization" && v.starts_with("Bearer ")).map(|(_, v)| v[7..].to_string()).collect()
        } else {
            Vec::new()
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let (for_filter, native) = (sidecar(&revoked, &alive), sidecar(&revoked, &alive));
            let worker = worker_for(&for_filter);
            for (r, h) in requests.iter().zip(&all) {
                let filter = through_filter(&worker, &for_filter, h).await;
                let alone = verdict_of(native.check(envoy_check_request(h)).await, h);
                // An outage is Envoy's 503 in the native mode (no body, no decision record).
                if alone.status == 503 {
                    prop_assert_eq!(filter.status, 503, "{:?}", r);
                } else {
                    prop_assert_eq!((filter.status, &filter.detail), (alone.status, &alone.detail), "{:?}", r);
                    prop_assert_eq!(&filter.forwarded, &alone.forwarded, "{:?}", r);
                    // No credential reaches an upstream once verified (nothing here forwards);
                    // on public paths it is not read, so it is the client's own header.
                    if alone.status == 200 && !matches!(r.path, "/health" | "/open") {
                        prop_assert!(alone.forwarded.is_empty(), "{:?} forwarded {:?}", r, alone.forwarded);
                    }
                    prop_assert_eq!(&filter.record, &alone.record, "{:?}", r);
                }
            }
            Ok(())
        })?;
    }
}

/// The drift test: a filter that decides with one rule changed (here its issuer check, by
/// pushing it settings that differ from the sidecar's) is caught by the comparison above.
#[test]
fn a_filter_that_drifts_from_the_sidecar_is_caught() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (for_filter, native) = (sidecar(&[], &[]), sidecar(&[], &[]));
        let settings = Settings::from_json(br#"{"sidecarCluster": "authz_sidecar"}"#).unwrap();
        let mut w = Worker::new(settings, Metrics::default());
        let mut c = ControlState::default();
        let at = UNIX_EPOCH + Duration::from_secs(now());
        for mut e in for_filter.control_events() {
            if let Some(authz_proto::authz::v1::control_event::Event::Policy(p)) = &mut e.event {
                let mut s: serde_json::Value = serde_json::from_str(&p.settings_json).unwrap();
                s["issuers"] = json!([]);
                p.settings_json = s.to_string();
            }
            c.apply(&mut w, e, at);
        }
        let worker = Rc::new(RefCell::new(w));
        let foreign = UserToken { sub: "alice", roles: vec![], labs: vec![], flaw: 2 };
        let r = Req {
            method: "GET",
            path: "/api/tools/x",
            credential: Credential::Bearer(foreign),
            action: 0,
            original: 0,
        };
        let h = headers(&r, now());
        let filter = through_filter(&worker, &for_filter, &h).await;
        let alone = verdict_of(native.check(envoy_check_request(&h)).await, &h);
        assert_eq!((alone.status, alone.detail.as_str()), (401, "token_wrong_issuer"));
        assert_eq!((filter.status, filter.detail.as_str()), (200, "alice|||"), "the drifted filter lets it in");
    });
}

/// The second provider, case by case in both modes: its tokens work where a rule names it (from
/// `Authorization` or its own header), name their service by its `serviceClaim` only, and are
/// refused elsewhere; its issuer with the default provider's key is refused.
#[test]
fn each_provider_is_held_to_its_own_keys_and_routes_in_both_modes() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let (for_filter, native) = (sidecar(&[], &[]), sidecar(&[], &[]));
        let worker = worker_for(&for_filter);
        let bob = UserToken { sub: "bob", roles: vec![], labs: vec!["l1"], flaw: 0 };
        let cases = [
            ("/api/partner/x", Credential::Partner(bob.clone()), 200, "bob||l1|partner-sync"),
            ("/api/services/x", Credential::PartnerHeader(bob.clone()), 200, "bob||l1|partner-sync"),
            ("/api/either/x", Credential::Bearer(bob.clone()), 200, "bob|l1|l1|billing"),
            ("/api/tools/x", Credential::Partner(bob.clone()), 401, "token_wrong_issuer"),
            ("/api/partner/x", Credential::Bearer(bob.clone()), 401, "token_wrong_issuer"),
            ("/api/partner/x", Credential::PartnerForged(bob.clone()), 401, "token_bad_signature"),
        ];
        for (path, credential, status, detail) in cases {
            let r = Req { method: "GET", path, credential, action: 0, original: 0 };
            let h = headers(&r, now());
            let filter = through_filter(&worker, &for_filter, &h).await;
            let alone = verdict_of(native.check(envoy_check_request(&h)).await, &h);
            assert_eq!((alone.status, alone.detail.as_str()), (status, detail), "{r:?}");
            assert_eq!((filter.status, filter.detail.as_str()), (status, detail), "{r:?}");
            assert!(filter.forwarded.is_empty() && alone.forwarded.is_empty(), "{r:?}");
        }
    });
}
