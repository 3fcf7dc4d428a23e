//! The sequence, step by step: every outcome and every need, with a host that answers from a
//! script.

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::json;

use serde_json::Value;

use super::*;
use crate::claims::ClaimsPolicy;
use crate::keys::KeySet;
use crate::revocation::Revocation;
use crate::routes::PolicyDocument;
use crate::routes::RouteTable;

const NOW: u64 = 1_700_000_000;
const SECRET: &[u8] = b"pipeline-test-secret";

struct TestFacts {
    auth: Authenticator,
    revocations: RevocationSet,
    fresh: bool,
    format: ApiKeyFormat,
}

use crate::authenticator::Authenticator;

impl Facts for TestFacts {
    fn now(&self) -> u64 {
        NOW
    }
    fn authenticate(&mut self, token: &str) -> LocalVerdict {
        self.auth.authenticate(token, NOW)
    }
    fn revocations(&self) -> Option<&RevocationSet> {
        self.fresh.then_some(&self.revocations)
    }
    fn providers(&self) -> &Providers {
        self.auth.providers()
    }
    fn api_key_format(&self) -> &ApiKeyFormat {
        &self.format
    }
}

fn facts() -> TestFacts {
    let mut keys = KeySet::new();
    keys.add_hmac_secret(SECRET, Algorithm::HS256);
    let mut auth = Authenticator::new(ClaimsPolicy::default(), 64);
    auth.set_keys(keys);
    TestFacts {
        auth,
        revocations: RevocationSet::new(),
        fresh: true,
        format: ApiKeyFormat { prefix: Some("ak_".into()), ..Default::default() },
    }
}

fn sign(claims: serde_json::Value) -> String {
    encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(SECRET)).unwrap()
}

fn unknown_key_token() -> String {
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("elsewhere".into());
    encode(&h, &json!({"sub": "alice", "exp": NOW + 60}), &EncodingKey::from_secret(b"other")).unwrap()
}

fn alice() -> String {
    sign(json!({"sub": "alice", "roles": ["user"], "exp": NOW + 60, "sid": "s1", "jti": "j1"}))
}

fn action(name: &str, jti: &str) -> String {
    sign(json!({"sub": "alice", "action": name, "exp": NOW + 60, "jti": jti}))
}

fn table() -> RouteTable {
    let doc: PolicyDocument = serde_json::from_value(json!({
        "defaultAction": "deny",
        "routes": [
            {"id": "open", "prefix": "/open", "public": true},
            {"id": "tools", "prefix": "/api/tools"},
            {"id": "admin", "prefix": "/api/admin", "rolesAnyOf": ["admin"]},
            {"id": "delete", "prefix": "/api/delete", "action": "delete"},
            {"id": "session", "prefix": "/api/session", "requireSession": true},
            {"id": "rego", "prefix": "/api/rego", "rego": "data.x.allow"},
            {"id": "tes", "prefix": "/ga4gh/tes", "methods": ["POST"], "quota": {"resources": "tes"}},
            {"id": "alias", "prefix": "/api/alias", "methods": ["DELETE"]},
            {"id": "partner", "prefix": "/api/partner", "providers": ["partner"]},
            {"id": "either", "prefix": "/api/either", "providers": ["default", "partner"]},
        ]
    }))
    .unwrap();
    RouteTable::from_document(vec!["/health".into()], vec![], doc).unwrap()
}

/// One step of the script: the need's name, and the answer to give.
type Script = Vec<(&'static str, Answer)>;

fn need_name(n: &Need) -> &'static str {
    match n {
        Need::Policy => "policy",
        Need::Verify { action: false, .. } => "verify",
        Need::Verify { action: true, .. } => "verify_action",
        Need::Revocations => "revocations",
        Need::ApiKey(_) => "api_key",
        Need::Session(_) => "session",
        Need::SpendActionToken(_) => "spend",
        Need::Rego(_) => "rego",
        Need::Quota(_) => "quota",
    }
}

/// Runs the pipeline, answering its needs from `script` in order; returns the outcome's
/// summary (`allow:<user|public>[:lease]`, `deny:<code>[:<user>]`, `unavailable`) and asserts
/// every scripted need was asked.
fn run(f: &mut TestFacts, table: Table, method: &str, path: &str, headers: &[(&str, &str)], script: Script) -> String {
    let headers: Vec<(String, Vec<u8>)> = headers.iter().map(|(k, v)| (k.to_string(), v.as_bytes().to_vec())).collect();
    let sources = f.auth.providers().token_sources().to_vec();
    let mut p = Pipeline::with_sources(table, Request { method, path, headers: &headers }, &sources);
    let mut script = script.into_iter();
    let outcome = loop {
        match p.eval(f) {
            Step::Done(o) => break o,
            Step::Need(n) => {
                let name = need_name(&n);
                let Some((want, answer)) = script.next() else { return format!("need:{name}") };
                assert_eq!(name, want, "{method} {path}");
                p.digest(answer);
            }
        }
    };
    assert!(script.next().is_none(), "{method} {path}: a scripted need was not asked");
    let user = |c: &Option<Arc<Verified>>| c.as_ref().map_or(String::new(), |c| format!(":{}", c.identity.user_id));
    match &outcome {
        Outcome::Allow { caller: None, .. } => "allow:public".into(),
        Outcome::Allow { caller, lease, .. } => {
            format!("allow{}{}", user(caller), lease.as_ref().map_or(String::new(), |l| format!(":{l}")))
        }
        Outcome::Deny { denial, caller, .. } => format!("deny:{}{}", denial.code, user(caller)),
        Outcome::Unavailable(_) => "unavailable".into(),
    }
}

fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

#[test]
fn what_is_decided_before_the_credential() {
    let t = table();
    let mut f = facts();
    let p = Table::Policy(&t);
    assert_eq!(run(&mut f, p, "GET", "/health", &[], vec![]), "allow:public");
    assert_eq!(run(&mut f, p, "GET", "/open/x", &[], vec![]), "allow:public");
    assert_eq!(run(&mut f, p, "GET", "/api/tools/%2e%2e/admin", &[], vec![]), "deny:path_dot_segment");
    assert_eq!(run(&mut f, p, "GET", "/elsewhere", &[], vec![]), "deny:no_matching_rule");
    assert_eq!(run(&mut f, p, "POST", "/api/alias?_method=DELETE", &[], vec![]), "deny:method_override");
    // No policy yet: the always-public paths only; anything else waits for the policy.
    assert_eq!(run(&mut f, Table::Bootstrap(&t), "GET", "/health", &[], vec![]), "allow:public");
    assert_eq!(run(&mut f, Table::Bootstrap(&t), "GET", "/api/tools", &[], vec![]), "need:policy");
}

#[test]
fn bearer_tokens() {
    let t = table();
    let p = Table::Policy(&t);
    let mut f = facts();
    let a = bearer(&alice());
    let auth = |v: &str| vec![("authorization", v.to_string())];
    fn h<'a>(v: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
        v.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }
    let alice_h = auth(&a);
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &[], vec![]), "deny:missing_credential");
    assert_eq!(
        run(&mut f, p, "GET", "/api/tools", &[("authorization", "Basic x")], vec![]),
        "deny:unsupported_auth_scheme"
    );
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&alice_h), vec![]), "allow:alice");
    assert_eq!(run(&mut f, p, "GET", "/api/admin", &h(&alice_h), vec![]), "deny:missing_role:alice");
    let expired = bearer(&sign(json!({"sub": "alice", "exp": NOW - 600})));
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&auth(&expired)), vec![]), "deny:token_expired");
    // A token no key here fits: the host verifies it (or refuses it).
    let unknown = auth(&bearer(&unknown_key_token()));
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&unknown), vec![]), "need:verify");
    let refused = vec![("verify", Answer::Verified(Err(TokenError::UnknownKey)))];
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&unknown), refused), "deny:token_unknown_key");
    let outage = vec![("verify", Answer::Unavailable("keys"))];
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&unknown), outage), "unavailable");
    // Revocations: verified first, then the set must be current.
    f.fresh = false;
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&alice_h), vec![]), "need:revocations");
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&auth(&expired)), vec![]), "deny:token_expired");
    f.fresh = true;
    f.revocations.insert(&Revocation::Session { sid: "s1".into(), expires_at: NOW + 600 });
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h(&alice_h), vec![]), "deny:token_revoked:alice");
}

#[test]
fn what_needs_shared_state() {
    let t = table();
    let p = Table::Policy(&t);
    let mut f = facts();
    let a = bearer(&alice());
    let mut h = vec![("authorization", a.as_str())];
    // A live session.
    assert_eq!(run(&mut f, p, "GET", "/api/session", &h, vec![("session", Answer::Session(true))]), "allow:alice");
    let ended = vec![("session", Answer::Session(false))];
    assert_eq!(run(&mut f, p, "GET", "/api/session", &h, ended), "deny:session_invalid:alice");
    // Rego, then quota: both after everything else, in that order.
    assert_eq!(run(&mut f, p, "GET", "/api/rego", &h, vec![("rego", Answer::Rego(Ok(true)))]), "allow:alice");
    assert_eq!(
        run(&mut f, p, "GET", "/api/rego", &h, vec![("rego", Answer::Rego(Ok(false)))]),
        "deny:policy_denied:alice"
    );
    assert_eq!(
        run(&mut f, p, "GET", "/api/rego", &h, vec![("rego", Answer::Rego(Err(())))]),
        "deny:policy_error:alice"
    );
    let lease = vec![("quota", Answer::Leased("L1".into()))];
    assert_eq!(run(&mut f, p, "POST", "/ga4gh/tes/v1/tasks", &h, lease), "allow:alice:L1");
    let over = vec![("quota", Answer::Denied(Denial::forbidden(codes::QUOTA_EXCEEDED, "q"), json!({"limit": 1})))];
    assert_eq!(run(&mut f, p, "POST", "/ga4gh/tes/v1/tasks", &h, over), "deny:quota_exceeded:alice");
    // Action tokens: required, verified, matched to the route, not revoked, then spent.
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, vec![]), "deny:action_token_required:alice");
    let good = action("delete", "a1");
    h.push(("x-action-token", good.as_str()));
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, vec![("spend", Answer::Spent)]), "allow:alice");
    let used = vec![("spend", Answer::Denied(Denial::unauthorized(codes::ACTION_TOKEN_USED, "u"), Value::Null))];
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, used), "deny:action_token_used:alice");
    let other = action("rename", "a2");
    h[1].1 = other.as_str();
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, vec![]), "deny:action_token_invalid:alice");
    let unknown = unknown_key_token();
    h[1].1 = unknown.as_str();
    let refused = vec![("verify_action", Answer::Verified(Err(TokenError::UnknownKey)))];
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, refused), "deny:action_token_invalid:alice");
    h[1].1 = good.as_str();
    f.revocations.insert(&Revocation::Token { jti: "a1".into(), expires_at: NOW + 600 });
    assert_eq!(run(&mut f, p, "DELETE", "/api/delete/1", &h, vec![]), "deny:action_token_revoked:alice");
}

#[test]
fn api_keys() {
    let t = table();
    let p = Table::Policy(&t);
    let mut f = facts();
    let key = Arc::new(Verified::new(
        Identity::from_claims(serde_json::from_value(json!({"sub": "svc-key", "exp": NOW + 600})).unwrap()).unwrap(),
        "ak_1",
    ));
    let found = || vec![("api_key", Answer::ApiKey(Arc::clone(&key)))];
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &[("x-api-key", "junk")], vec![]), "deny:api_key_malformed");
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &[("x-api-key", "ak_1")], found()), "allow:svc-key");
    let refused = vec![("api_key", Answer::Denied(Denial::unauthorized(codes::API_KEY_INVALID, "r"), Value::Null))];
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &[("x-api-key", "ak_1")], refused), "deny:api_key_invalid");
    // Keys carry no session or action: step-up routes refuse them, naming the caller.
    let h = [("x-api-key", "ak_1")];
    assert_eq!(run(&mut f, p, "GET", "/api/session", &h, found()), "deny:api_key_not_allowed:svc-key");
    assert_eq!(run(&mut f, p, "GET", "/api/admin", &h, found()), "deny:missing_role:svc-key");
    let mut rego = found();
    rego.push(("rego", Answer::Rego(Ok(true))));
    assert_eq!(run(&mut f, p, "GET", "/api/rego", &h, rego), "allow:svc-key");
    f.fresh = false;
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h, vec![]), "need:revocations");
    f.fresh = true;
    let sha = crate::cache::digest("ak_1").iter().map(|b| format!("{b:02x}")).collect::<String>();
    f.revocations.insert(&Revocation::ApiKey { sha256: sha, expires_at: NOW + 600 });
    assert_eq!(run(&mut f, p, "GET", "/api/tools", &h, vec![]), "deny:api_key_revoked");
}

#[test]
fn the_audit_subject_names_what_was_presented() {
    let t = table();
    let a = bearer(&alice());
    let headers = vec![("authorization".to_string(), a.clone().into_bytes())];
    let mut p = Pipeline::new(Table::Policy(&t), Request { method: "GET", path: "/api/admin", headers: &headers });
    let Step::Done(outcome) = p.eval(&mut facts()) else { panic!("decided locally") };
    let s = crate::audit::Subject::of(&p);
    assert_eq!((s.rule, s.credential), ("admin", "bearer"));
    let ctx = crate::audit::Context {
        trace_id: "t",
        client_trace_chosen: false,
        decision_id: "d",
        policy_version: "v",
        tenant_claim: "tenant",
        decider: "filter",
    };
    let fields = authz_proto::audit::decode(&crate::audit::record(&ctx, &s, &outcome).unwrap()).unwrap();
    assert_eq!(fields["reason"], "missing_role");
    assert_eq!(fields["user_id"], "alice");
    assert_eq!(fields["token_fp"], crate::cache::fingerprint(&alice()));
    // A public path: the credential is not read.
    let mut p = Pipeline::new(Table::Policy(&t), Request { method: "GET", path: "/health", headers: &headers });
    let Step::Done(outcome) = p.eval(&mut facts()) else { panic!("public") };
    let fields =
        authz_proto::audit::decode(&crate::audit::record(&ctx, &crate::audit::Subject::of(&p), &outcome).unwrap())
            .unwrap();
    assert_eq!((fields.get("credential"), fields.get("token_fp"), fields["reason"].as_str()), (None, None, "public"));
}

#[test]
fn providers_each_verify_their_own_tokens_on_the_routes_that_name_them() {
    use crate::credential::TokenSource;
    use crate::provider::ProviderSettings;
    const PARTNER: &[u8] = b"partner-secret";
    let t = table();
    let p = Table::Policy(&t);
    let mut f = facts();
    let settings = crate::settings::SharedSettings {
        providers: vec![ProviderSettings {
            name: "partner".into(),
            issuer: "https://partner".into(),
            audiences: vec!["gateway".into()],
            clock_skew_secs: 60,
            require_exp: true,
            token_sources: vec![TokenSource { cookie: None, header: Some("x-partner-token".into()), prefix: None }],
            claim_to_headers: vec![],
            forward_credential: false,
            service_claim: None,
        }],
        ..Default::default()
    };
    f.auth.set_providers(Providers::from_settings(&settings));
    let mut keys = KeySet::new();
    keys.add_hmac_secret(PARTNER, Algorithm::HS256);
    f.auth.set_provider_keys("partner", keys);
    let partner =
        |claims: Value| encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(PARTNER)).unwrap();
    let bob = bearer(&partner(json!({"sub": "bob", "iss": "https://partner", "aud": "gateway", "exp": NOW + 60})));
    let a = bearer(&alice());
    let on = |path: &str, f: &mut TestFacts, h: &[(&str, &str)]| run(f, p, "GET", path, h, vec![]);
    assert_eq!(on("/api/partner", &mut f, &[("authorization", &bob)]), "allow:bob");
    assert_eq!(on("/api/either", &mut f, &[("authorization", &bob)]), "allow:bob");
    assert_eq!(on("/api/either", &mut f, &[("authorization", &a)]), "allow:alice");
    // A rule naming no provider accepts the default one only; one naming others, only them.
    assert_eq!(on("/api/tools", &mut f, &[("authorization", &bob)]), "deny:token_wrong_issuer:bob");
    assert_eq!(on("/api/partner", &mut f, &[("authorization", &a)]), "deny:token_wrong_issuer:alice");
    // The partner's issuer with the default provider's key: only the partner's keys are tried.
    let forged = bearer(&sign(json!({"sub": "mallory", "iss": "https://partner", "aud": "gateway", "exp": NOW + 60})));
    assert_eq!(on("/api/partner", &mut f, &[("authorization", &forged)]), "deny:token_bad_signature");
    let wrong_aud = bearer(&partner(json!({"sub": "bob", "iss": "https://partner", "aud": "x", "exp": NOW + 60})));
    assert_eq!(on("/api/partner", &mut f, &[("authorization", &wrong_aud)]), "deny:token_wrong_audience:bob");
    // Each provider's own token sources.
    let raw_bob = bob.trim_start_matches("Bearer ").to_string();
    assert_eq!(on("/api/partner", &mut f, &[("x-partner-token", &raw_bob)]), "allow:bob");
    let raw_alice = alice();
    assert_eq!(on("/api/either", &mut f, &[("x-partner-token", &raw_alice)]), "deny:token_wrong_source:alice");
    // API keys are the default provider's.
    let key = Arc::new(Verified::new(
        Identity::from_claims(serde_json::from_value(json!({"sub": "svc-key", "exp": NOW + 600})).unwrap()).unwrap(),
        "ak_1",
    ));
    let found = vec![("api_key", Answer::ApiKey(key))];
    assert_eq!(
        run(&mut f, p, "GET", "/api/partner", &[("x-api-key", "ak_1")], found),
        "deny:token_wrong_issuer:svc-key"
    );
}
