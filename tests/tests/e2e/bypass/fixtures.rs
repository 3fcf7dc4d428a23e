//! The stack and the credentials of the bypass matrix: the example policy with the quota
//! settings, and tokens of every kind the cases use (revocations stored for some).

use authz_core::revocation::Revocation;
use authz_e2e::stack::{Mode, Stack};
use authz_e2e::tokens::{self, AUDIENCE, DEV_KID, OTHER_PRIVATE_PEM, sign_rs256, sign_with, user_claims};
use serde_json::{Value, json};

use crate::e2e::quota;

/// A token of the development issuer for `sub` with these extra claims.
fn token(sub: &str, roles: &[&str], extra: Value) -> String {
    let mut c = user_claims(sub, &format!("{}@lab.example", sub.trim()), roles);
    c["auth_time"] = json!(tokens::now());
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    format!("Bearer {}", sign_rs256(&c, Some(DEV_KID)).unwrap())
}

/// An action token for `delete-sample` (raw, for `X-Action-Token`).
pub(super) fn action_token(sub: &str, extra: Value) -> String {
    let mut c = user_claims(sub, "a@lab.example", &[]);
    c["action"] = json!("delete-sample");
    for (k, v) in extra.as_object().into_iter().flatten() {
        c[k] = v.clone();
    }
    sign_rs256(&c, Some(DEV_KID)).unwrap()
}

/// The example policy's rules, with the quota and tenant settings of the quota tests.
pub(crate) fn options(mode: Mode) -> authz_e2e::stack::Options {
    let mut opts = quota::options(mode);
    let text =
        std::fs::read_to_string(authz_e2e::paths::workspace().join("authz-sidecar/policy.example.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    opts.routes = doc["routes"].clone();
    opts.record_upstream = true;
    opts
}

/// Credentials shared by the cases of one stack (single-use ones are made per run).
pub(crate) struct Fixtures {
    pub(super) bob: String,
    pub(super) alice: String,
    pub(super) carol: String,
    pub(super) service: String,
    pub(super) unknown_kid: String,
    pub(super) action: String,
    pub(super) logged_out_action: String,
    pub(super) carol_old_action: String,
    pub(super) spaced_sub: String,
    pub(super) spaced_role: String,
}

pub(crate) async fn fixtures(stack: &Stack) -> Fixtures {
    let now = tokens::now();
    let bob = token("u-bob", &["user", "scientist"], json!({"labs": ["lab-a"], "lab": "lab-a"}));
    let alice = token("u-alice", &["admin", "user"], json!({"scope": "models:write", "tier": "gold", "lab": "lab-a"}));
    // Signed in again after "log out everywhere" (iat past the cut-off), with an action token
    // from before it.
    let carol = token("u-carol", &["user"], json!({"iat": now + 2, "nbf": now}));
    let carol_old_action = action_token("u-carol", json!({"iat": now - 30}));
    let mut service = user_claims("svc-tes", "svc@lab.example", &[]);
    service["svc"] = json!("tes");
    let service = format!("Bearer {}", sign_rs256(&service, Some(DEV_KID)).unwrap());
    let mut unknown = user_claims("u-bob", "b@lab.example", &["admin"]);
    unknown["aud"] = json!(AUDIENCE);
    let unknown_kid = format!("Bearer {}", sign_with(&unknown, Some("no-such-kid"), OTHER_PRIVATE_PEM).unwrap());
    let old_sid = uuid::Uuid::new_v4().to_string();
    let logged_out_action = action_token("u-alice", json!({"sid": old_sid}));
    stack.auth.state.revoke(&Revocation::Session { sid: old_sid, expires_at: now + 900 }, true).await.unwrap();
    stack
        .auth
        .state
        .revoke(&Revocation::User { sub: "u-carol".into(), before: now + 1, expires_at: now + 900 }, true)
        .await
        .unwrap();
    Fixtures {
        bob,
        alice,
        carol,
        service,
        unknown_kid,
        action: action_token("u-alice", json!({})),
        logged_out_action,
        carol_old_action,
        spaced_sub: token("u-alice ", &["user"], json!({})),
        spaced_role: token("u-dave", &["user", " scientist"], json!({"labs": ["lab-a"]})),
    }
}
