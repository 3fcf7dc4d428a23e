//! Offline commands for operators and users' CI: `validate` a configuration and its policy,
//! and `check` what the policy decides for a token and a request, without a running sidecar.

use authz_core::denial::codes;
use std::path::Path;

use authz_core::authenticator::{Authenticator, LocalVerdict};
use authz_core::routes::{self, Matched};
use authz_core::{Denial, KeySet};
use serde_json::json;

use crate::config::Config;

/// What `check` prints: the decision, the rule that matched and why.
pub fn check(
    config: &Config,
    jwks: Option<&Path>,
    token: Option<&str>,
    method: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let policy = config.initial_policy()?;
    let mut keys = KeySet::new();
    if let Some(file) = jwks {
        keys.extend_from_jwks_json(&std::fs::read_to_string(file)?)?;
    }
    if let Some(secret) = &config.jwt_secret {
        for alg in config.hmac_algorithms()? {
            keys.add_hmac_secret(secret.as_bytes(), alg);
        }
    }
    let claims = authz_core::ClaimsPolicy {
        issuers: config.jwt.issuers.clone(),
        audiences: config.jwt.audiences.clone(),
        clock_skew_secs: config.jwt.clock_skew.as_secs(),
    };
    let scope = claims.scope();
    let mut auth = Authenticator::new(claims, 0);
    auth.set_keys(keys);
    let now = crate::identity_cache::unix_now();
    let verdict = |rule: Option<&str>, outcome: Result<(), Denial>, note: Option<&str>| {
        let mut v = match outcome {
            Ok(()) => json!({"decision": "allow", "status": 200}),
            Err(d) => json!({"decision": "deny", "status": d.status, "code": d.code}),
        };
        v["rule"] = json!(rule);
        v["policy_version"] = json!(policy.version);
        if let Some(n) = note {
            v["note"] = json!(n);
        }
        v
    };
    // The same refusals before any rule as the gateway makes.
    if let Err(d) = authz_core::path_guard::check(path) {
        return Ok(verdict(None, Err(d), Some("the path holds a form an upstream could read differently")));
    }
    if authz_core::path_guard::has_method_param(path) && policy.table.depends_on_method(path) {
        return Ok(verdict(None, Err(authz_core::path_guard::METHOD_OVERRIDE), None));
    }
    let route = match policy.table.find(method, path) {
        Matched::Public => return Ok(verdict(None, Ok(()), Some("public path"))),
        Matched::NoRule => {
            return Ok(verdict(
                None,
                Err(Denial::forbidden(codes::NO_MATCHING_RULE, "no policy rule allows this request")),
                None,
            ));
        }
        Matched::Protected(r) => r,
    };
    let rule = route.map(|r| r.id.as_str());
    let Some(token) = token else { return Ok(verdict(rule, Err(Denial::missing_credential()), None)) };
    let identity = match auth.authenticate(token, now) {
        LocalVerdict::Valid { verified, .. } => verified,
        LocalVerdict::Invalid(e) => return Ok(verdict(rule, Err(Denial::from_token_error(&e)), None)),
        LocalVerdict::Unknown => {
            return Ok(verdict(
                rule,
                Err(Denial::from_token_error(&authz_core::TokenError::UnknownKey)),
                Some("pass the auth service's JWKS with --jwks"),
            ));
        }
    };
    let path_only = routes::path_only(path);
    let outcome = match route {
        Some(r) => r.check(&scope, &identity.identity, None, path_only, now),
        None => scope
            .check(identity.identity.issuer.as_deref(), &identity.identity.audiences)
            .map_err(|e| Denial::from_token_error(&e))
            .and_then(|()| authz_core::authorize::check_endpoint_permissions(&identity.identity, path_only)),
    };
    let note = route.filter(|r| r.require_session).map(|_| "the rule also needs a live session (checked online only)");
    let mut v = verdict(rule, outcome, note);
    v["user_id"] = json!(identity.identity.user_id);
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Env;

    struct NoEnv;
    impl Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn check_explains_the_decision() {
        let dir = std::env::temp_dir().join(format!("authz-cli-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let policy = dir.join("policy.yaml");
        std::fs::write(&policy, "routes:\n  - id: admin\n    prefix: /api/admin\n    rolesAnyOf: [admin]\n").unwrap();
        let yaml = format!("iamUrl: http://a\nredisUrl: redis://r\npolicyFile: {}\n", policy.display());
        let mut config = Config::from_yaml(&yaml, "t", &NoEnv).unwrap();
        config.jwt_secret = Some("0123456789abcdef0123".into());
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "u1", "roles": ["user"], "exp": crate::identity_cache::unix_now() + 60}),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        let v = check(&config, None, Some(&token), "GET", "/api/admin/x").unwrap();
        assert_eq!(
            (v["decision"].as_str(), v["code"].as_str(), v["rule"].as_str()),
            (Some("deny"), Some("missing_role"), Some("admin"))
        );
        let v = check(&config, None, Some(&token), "GET", "/api/tools").unwrap();
        assert_eq!((v["decision"].as_str(), v["user_id"].as_str()), (Some("allow"), Some("u1")));
        let v = check(&config, None, None, "GET", "/api/tools").unwrap();
        assert_eq!(v["code"], "missing_credential");
        let v = check(&config, None, Some(&token), "GET", "/api/x/%2e%2e;/admin").unwrap();
        assert_eq!((v["status"].as_u64(), v["code"].as_str()), (Some(400), Some("path_parameters")));
        let v = check(&config, None, Some(&token), "GET", "/api/ADMIN/x").unwrap();
        assert_eq!(v["rule"], "admin", "protected rules match in any case");
        let _ = std::fs::remove_dir_all(dir);
    }
}
