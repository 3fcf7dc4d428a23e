//! Offline commands for operators and users' CI: `validate` a configuration and its policy,
//! and `check` what the policy decides for a token and a request, without a running sidecar.

use std::path::Path;

use authz_core::api_key_format::ApiKeyFormat;
use authz_core::authenticator::{Authenticator, LocalVerdict};
use authz_core::headers::{AUTHORIZATION, X_ACTION_TOKEN, X_API_KEY};
use authz_core::pipeline::{Answer, Facts, Need, Outcome, Pipeline, Request, Step, Table};
use authz_core::provider::Providers;
use authz_core::revocation::{Revocation, RevocationSet};
use authz_core::{KeySet, TokenError};
use serde_json::json;

use crate::config::Config;
use crate::credentials::keystore::KeySource;

/// The request `check` decides: its credentials and where it goes.
#[derive(Debug, Default)]
pub struct CheckRequest<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub token: Option<&'a str>,
    pub api_key: Option<&'a str>,
    pub action_token: Option<&'a str>,
}

/// Where `check` finds keys and revocations.
#[derive(Debug, Default)]
pub struct Offline<'a> {
    /// The auth service's JWKS document.
    pub jwks: Option<&'a Path>,
    /// Revocation facts as the auth service stores them (the README's contract), one JSON
    /// object per line or a JSON array.
    pub revocations: Option<&'a Path>,
}

/// The pipeline's view of the command line.
struct CliFacts {
    auth: Authenticator,
    revocations: RevocationSet,
    api_key_format: ApiKeyFormat,
    now: u64,
}

impl Facts for CliFacts {
    fn now(&self) -> u64 {
        self.now
    }

    fn authenticate(&mut self, token: &str) -> LocalVerdict {
        self.auth.authenticate(token, self.now)
    }

    fn revocations(&self) -> Option<&RevocationSet> {
        Some(&self.revocations)
    }

    fn providers(&self) -> &Providers {
        self.auth.providers()
    }

    fn api_key_format(&self) -> &ApiKeyFormat {
        &self.api_key_format
    }
}

/// What `check` prints: the decision, the rule that matched and why. The request goes through
/// the gateway's own pipeline; what only the running gateway can know (an API key's identity,
/// a live session, a spent action token, a quota lease) is named in `notes`.
pub fn check(config: &Config, offline: &Offline, request: &CheckRequest) -> anyhow::Result<serde_json::Value> {
    let policy = config.initial_policy()?;
    let mut keys = KeySet::new();
    if let Some(file) = offline.jwks {
        keys.extend_from_jwks_json(&std::fs::read_to_string(file)?, authz_core::keys::Source::Local)?;
    }
    if let Some(secret) = &config.jwt_secret {
        for alg in config.hmac_algorithms()? {
            keys.add_hmac_secret(secret, alg);
        }
    }
    let mut auth = Authenticator::new(authz_core::ClaimsPolicy::default(), 16);
    auth.set_providers(Providers::from_settings(&config.shared_settings()));
    auth.set_keys(keys);
    // Other providers' keys from local sources (a file, inline) are read here too.
    for p in &config.providers {
        let doc = match p.key_source() {
            KeySource::File(path) => std::fs::read_to_string(path)?,
            KeySource::Inline(doc) => doc,
            KeySource::Url(_) | KeySource::Discovery(_) => continue,
        };
        let mut keys = KeySet::new();
        keys.extend_from_jwks_json(&doc, authz_core::keys::Source::Local)?;
        auth.set_provider_keys(&p.name, keys);
    }
    let mut notes = Vec::new();
    let revocations = match offline.revocations {
        Some(file) => read_revocations(file)?,
        None => {
            notes.push("no --revocations given: no credential is taken as revoked");
            RevocationSet::new()
        }
    };
    let now = crate::credentials::identity_cache::unix_now();
    let mut facts = CliFacts { auth, revocations, api_key_format: config.api_keys.format.clone(), now };
    let mut headers: Vec<(String, String)> = Vec::new();
    if let Some(t) = request.token {
        headers.push((AUTHORIZATION.into(), format!("Bearer {t}")));
    }
    if let Some(k) = request.api_key {
        headers.push((X_API_KEY.into(), k.to_string()));
    }
    if let Some(a) = request.action_token {
        headers.push((X_ACTION_TOKEN.into(), a.to_string()));
    }
    let mut pipeline = Pipeline::with_sources(
        Table::Policy(&policy.table),
        Request { method: request.method, path: request.path, headers: &headers },
        facts.auth.providers().token_sources(),
    );
    let outcome = loop {
        let answer = match pipeline.eval(&mut facts) {
            Step::Done(outcome) => break outcome,
            Step::Need(Need::Verify { .. }) => {
                notes.push("no key here fits the token: pass the auth service's JWKS with --jwks (a provider's keys from a URL are fetched online only)");
                Answer::Verified(Err(TokenError::UnknownKey))
            }
            Step::Need(Need::ApiKey(_)) => {
                notes.push("an API key's identity is known only to the auth service (introspection, online)");
                break Outcome::Unavailable("api_key_introspection");
            }
            Step::Need(Need::Session(_)) => {
                notes.push("the rule also needs a live session (checked online only)");
                Answer::Session(true)
            }
            Step::Need(Need::SpendActionToken(_)) => {
                notes.push("the action token is spent online (single use)");
                Answer::Spent
            }
            Step::Need(Need::Rego(rule)) => {
                let r = pipeline.request();
                let identity = pipeline.caller().map(|c| &*c.identity);
                let attrs = crate::check::rego_input::Attributes::default();
                let input = crate::check::rego_input::build(
                    &attrs,
                    r.method,
                    r.path,
                    r.headers,
                    b"",
                    identity,
                    policy.hide_credentials(),
                );
                Answer::Rego(policy.rego_allows(rule, input).map_err(|_| ()))
            }
            Step::Need(Need::Quota(_)) => {
                notes.push("the quota lease is reserved online");
                Answer::Leased(String::new())
            }
            // Neither happens offline: the policy is given and the revocations are the file's.
            Step::Need(Need::Policy | Need::Revocations) => break Outcome::Unavailable("state"),
        };
        pipeline.digest(answer);
    };
    let mut v = match &outcome {
        Outcome::Allow { .. } => json!({"decision": "allow", "status": 200}),
        Outcome::Deny { denial, .. } => json!({"decision": "deny", "status": denial.status, "code": denial.code}),
        Outcome::Unavailable(need) => json!({"decision": "online", "needs": need}),
    };
    v["rule"] = json!(pipeline.route().map(|r| r.id.as_str()));
    v["policy_version"] = json!(policy.version);
    if let Some(caller) = outcome.caller() {
        v["user_id"] = json!(caller.identity.user_id);
    }
    if !notes.is_empty() {
        v["notes"] = json!(notes);
    }
    Ok(v)
}

/// Revocation facts from a file: a JSON array, or one JSON object per line.
fn read_revocations(file: &Path) -> anyhow::Result<RevocationSet> {
    let text = std::fs::read_to_string(file)?;
    let facts: Vec<Revocation> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), i + 1)))
            .collect::<anyhow::Result<_>>()?
    };
    let mut set = RevocationSet::new();
    for f in &facts {
        set.insert(f);
    }
    Ok(set)
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
        config.jwt_secret = Some(b"0123456789abcdef0123".to_vec());
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &json!({"sub": "u1", "roles": ["user"], "exp": crate::credentials::identity_cache::unix_now() + 60}),
            &jsonwebtoken::EncodingKey::from_secret(b"0123456789abcdef0123"),
        )
        .unwrap();
        let off = Offline::default();
        let req = |token: Option<&'static str>, path: &'static str| CheckRequest {
            method: "GET",
            path,
            token,
            ..Default::default()
        };
        let token: &'static str = Box::leak(token.into_boxed_str());
        let v = check(&config, &off, &req(Some(token), "/api/admin/x")).unwrap();
        assert_eq!(
            (v["decision"].as_str(), v["code"].as_str(), v["rule"].as_str()),
            (Some("deny"), Some("missing_role"), Some("admin"))
        );
        let v = check(&config, &off, &req(Some(token), "/api/tools")).unwrap();
        assert_eq!((v["decision"].as_str(), v["user_id"].as_str()), (Some("allow"), Some("u1")));
        let v = check(&config, &off, &req(None, "/api/tools")).unwrap();
        assert_eq!(v["code"], "missing_credential");
        let v = check(&config, &off, &req(Some(token), "/api/x/%2e%2e;/admin")).unwrap();
        assert_eq!((v["status"].as_u64(), v["code"].as_str()), (Some(400), Some("path_parameters")));
        let v = check(&config, &off, &req(Some(token), "/api/ADMIN/x")).unwrap();
        assert_eq!(v["rule"], "admin", "protected rules match in any case");
        let _ = std::fs::remove_dir_all(dir);
    }
}
