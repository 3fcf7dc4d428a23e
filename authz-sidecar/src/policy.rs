//! The route policy: from the policy file (`policyFile`, YAML) or the inline `routes` of the
//! configuration. A file is watched and hot-reloaded: a new version replaces the old one at
//! once (and is pushed to every filter VM); a broken file is refused with a logged reason and
//! `authz_policy_reloads_total{result="error"}` while the last good policy stays in force. At
//! start-up a broken policy is a start-up error.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use authz_core::routes::{PolicyDocument, RouteTable};
use tokio::sync::watch;
use tracing::{error, info};

use crate::metrics::Metrics;

mod rego;

/// A loaded policy.
pub struct Policy {
    /// Content hash of the policy file (16 hex digits).
    pub version: String,
    pub table: RouteTable,
    /// The document as JSON, for the filters.
    pub json: String,
    /// The compiled Rego modules, when the policy has any. Evaluation clones the engine (its
    /// modules are shared), so concurrent checks never wait on each other for long.
    rego: Option<rego::Engines>,
    hide_credentials: bool,
}

pub use rego::RegoDecision;

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("version", &self.version).field("rules", &self.table.len()).finish()
    }
}

impl Policy {
    /// Evaluates a Rego rule over `input`: `Ok(true)` only when the rule is defined and `true`.
    pub fn rego_allows(&self, rule: &str, input: serde_json::Value) -> Result<bool, String> {
        self.rego_decide(rule, input).map(|d| d.allowed)
    }

    /// The decision of `rule` for `input`: OPA-Envoy's boolean, or its object form.
    pub fn rego_decide(&self, rule: &str, input: serde_json::Value) -> Result<RegoDecision, String> {
        let Some(engines) = &self.rego else { return Err("the policy has no regoModules".into()) };
        engines.with(|engine| {
            engine.set_input(regorus::Value::from(input));
            let value = engine.eval_rule(rule.to_string()).map_err(|e| e.to_string())?;
            RegoDecision::of(&value).map_err(|kind| format!("the decision is {kind}"))
        })
    }

    /// `regoHideCredentials`: the credential headers are left out of Rego's input.
    pub fn hide_credentials(&self) -> bool {
        self.hide_credentials
    }
}

/// Why a policy could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read policy file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("policy file {path}: at `{field}`: {reason}")]
    Parse { path: String, field: String, reason: String },
    #[error("policy file {path}: {source}")]
    Rule { path: String, source: authz_core::routes::RouteError },
    #[error("policy file {path}: rego module {module:?}: {reason}")]
    Rego { path: String, module: String, reason: String },
}

/// What a policy is checked against besides itself: the configuration's public paths and
/// identity providers.
#[derive(Clone, Debug, Default)]
pub struct Known {
    pub public_paths: Vec<String>,
    /// Provider names route rules may name (`default` always).
    pub providers: Vec<String>,
}

/// Parses and validates a policy text.
pub fn parse(text: &str, origin: &str, known: &Known) -> Result<Policy, PolicyError> {
    let public_paths = &known.public_paths;
    let parse_error =
        |e: crate::yaml::YamlError| PolicyError::Parse { path: origin.to_string(), field: e.field, reason: e.reason };
    let doc: PolicyDocument = crate::yaml::parse(text).map_err(parse_error)?;
    // Re-encode as JSON for the filters: they parse the same document with the same types.
    let value: serde_json::Value = crate::yaml::parse(text).map_err(parse_error)?;
    let rego = if doc.rego_modules.is_empty() {
        None
    } else {
        let modules: std::collections::BTreeMap<String, String> =
            doc.rego_modules.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let engine = rego::load(&modules).map_err(|e| PolicyError::Rego {
            path: origin.to_string(),
            module: e.module,
            reason: e.reason,
        })?;
        Some(rego::Engines::new(engine))
    };
    if rego.is_none()
        && let Some(r) = doc.routes.iter().find(|r| r.rego.is_some())
    {
        return Err(PolicyError::Rego {
            path: origin.to_string(),
            module: String::new(),
            reason: format!("route {:?} names a rego rule but the policy has no regoModules", r.id),
        });
    }
    // Every named rule must exist and decide as a decision does: evaluate each once over an
    // empty input; a boolean, an object with a boolean `allowed` (OPA-Envoy's object form), or
    // undefined (nothing allows it) is a decision, anything else is a policy that would answer
    // `policy_error` on every request.
    if let Some(engine) = &rego {
        for r in doc.routes.iter().filter(|r| r.rego.is_some()) {
            let rule = authz_core::routes::rego_rule(r.rego.as_deref().unwrap_or_default());
            let value = engine
                .with(|e| {
                    e.set_input(regorus::Value::from(serde_json::json!({})));
                    e.eval_rule(rule.clone()).map_err(|err| err.to_string())
                })
                .map_err(|err| PolicyError::Rego {
                    path: origin.to_string(),
                    module: String::new(),
                    reason: format!("route {:?}: rule {rule}: {err}", r.id),
                })?;
            if let Err(kind) = RegoDecision::of(&value) {
                return Err(PolicyError::Rego {
                    path: origin.to_string(),
                    module: String::new(),
                    reason: format!(
                        "route {:?}: rule {rule} evaluates to {kind}, not a boolean or an object with a boolean `allowed`",
                        r.id
                    ),
                });
            }
        }
    }
    // A rule naming a provider that is not configured would refuse every token: a typo.
    for r in &doc.routes {
        let unknown = r.providers.iter().find(|p| *p != authz_core::provider::DEFAULT && !known.providers.contains(p));
        if let Some(p) = unknown {
            let reason = format!("names provider {p:?}, which is not configured (see `providers`)");
            let source = authz_core::routes::RouteError { id: r.id.clone(), reason };
            return Err(PolicyError::Rule { path: origin.to_string(), source });
        }
    }
    let hide_credentials = doc.rego_hide_credentials;
    let table = RouteTable::from_document(public_paths.to_vec(), Vec::new(), doc)
        .map_err(|source| PolicyError::Rule { path: origin.to_string(), source })?;
    Ok(Policy { version: PolicyDocument::version_of(text), table, json: value.to_string(), rego, hide_credentials })
}

/// Reads and parses the policy file.
pub fn load(path: &Path, known: &Known) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path)
        .map_err(|source| PolicyError::Read { path: path.display().to_string(), source })?;
    parse(&text, &path.display().to_string(), known)
}

/// The policy in force.
pub struct PolicyStore {
    tx: watch::Sender<Arc<Policy>>,
}

impl PolicyStore {
    pub fn new(initial: Policy) -> Self {
        info!(version = %initial.version, rules = initial.table.len(), "policy loaded");
        Self { tx: watch::channel(Arc::new(initial)).0 }
    }

    pub fn current(&self) -> Arc<Policy> {
        self.tx.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Arc<Policy>> {
        self.tx.subscribe()
    }

    /// Re-reads `path` every `interval`; applies changed, valid content.
    pub fn spawn_watcher(self: &Arc<Self>, path: PathBuf, known: Known, interval: Duration, metrics: Arc<Metrics>) {
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let mut last_text = std::fs::read_to_string(&path).ok();
            loop {
                tokio::time::sleep(interval).await;
                let text = match std::fs::read_to_string(&path) {
                    Ok(t) => t,
                    Err(e) => {
                        if last_text.is_some() {
                            error!(path = %path.display(), error = %e, "policy file unreadable; keeping the last good policy");
                            metrics.policy_reloads.get_or_create(&vec![("result", "error")]).inc();
                            last_text = None;
                        }
                        continue;
                    }
                };
                if last_text.as_deref() == Some(text.as_str()) {
                    continue;
                }
                last_text = Some(text.clone());
                match parse(&text, &path.display().to_string(), &known) {
                    Ok(p) => {
                        info!(version = %p.version, rules = p.table.len(), "policy reloaded");
                        metrics.policy_reloads.get_or_create(&vec![("result", "ok")]).inc();
                        store.tx.send_replace(Arc::new(p));
                    }
                    Err(e) => {
                        error!(error = %e, version_in_force = %store.current().version, "policy refused; keeping the last good policy");
                        metrics.policy_reloads.get_or_create(&vec![("result", "error")]).inc();
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_rule_of_the_wrong_type_is_refused_at_load() {
        let policy = |body: &str| {
            format!(
                "routes:\n  - id: r\n    prefix: /x\n    rego: envoy/authz/allow\nregoModules:\n  m.rego: |\n    package envoy.authz\n    import rego.v1\n    {body}\n"
            )
        };
        let err = parse(&policy("allow := \"yes\""), "p.yaml", &Known::default()).unwrap_err().to_string();
        assert!(err.contains("evaluates to a string"), "{err}");
        let err = parse(&policy("allow := {\"allowed\": 1}"), "p.yaml", &Known::default()).unwrap_err().to_string();
        assert!(err.contains("`allowed` is not a boolean"), "{err}");
        // A boolean, the object form, and undefined over an empty input are decisions.
        for ok in
            ["default allow := false", "allow := {\"allowed\": false, \"http_status\": 401}", "allow if input.x == 1"]
        {
            parse(&policy(ok), "p.yaml", &Known::default()).unwrap();
        }
    }

    #[test]
    fn object_decisions_are_read_as_opa_envoy_documents_them() {
        let v = |j: serde_json::Value| RegoDecision::of(&regorus::Value::from(j));
        assert!(v(serde_json::json!(true)).unwrap().allowed);
        let d = v(serde_json::json!({"allowed": false, "http_status": 302, "body": "moved",
            "headers": {"Location": "https://login", "x-bad": "a\nb"}, "request_headers_to_remove": ["X-Debug"]}))
        .unwrap();
        assert_eq!((d.allowed, d.status, d.body.as_deref()), (false, Some(302), Some("moved")));
        assert_eq!(
            d.headers,
            vec![("location".to_string(), "https://login".to_string())],
            "an unsafe value is left out"
        );
        assert_eq!(d.remove, vec!["x-debug".to_string()]);
        assert!(v(serde_json::json!({"headers": {}})).is_err(), "no `allowed`");
        assert!(v(serde_json::json!("allow")).is_err());
        assert!(!RegoDecision::of(&regorus::Value::Undefined).unwrap().allowed);
    }

    #[test]
    fn a_rule_names_configured_providers_only() {
        let text = "routes:\n  - id: svc\n    prefix: /internal\n    providers: [kubernetes]\n";
        let err = parse(text, "p.yaml", &Known::default()).unwrap_err().to_string();
        assert!(err.contains("names provider \"kubernetes\", which is not configured"), "{err}");
        let known = Known { providers: vec!["default".into(), "kubernetes".into()], ..Known::default() };
        assert!(parse(text, "p.yaml", &known).is_ok());
        assert!(parse(&text.replace("kubernetes", "default"), "p.yaml", &Known::default()).is_ok());
    }

    #[test]
    fn rego_rules_are_compiled_and_evaluated() {
        let text = r#"
routes:
  - id: lims-write
    prefix: /api/lims
    rego: data.gateway.lims.allow
regoModules:
  lims.rego: |
    package gateway.lims
    default allow := false
    allow if {
      input.attributes.request.http.method == "GET"
    }
    allow if {
      "lab-admin" in input.identity.roles
    }
"#;
        let p = parse(text, "p.yaml", &Known::default()).unwrap();
        let get =
            serde_json::json!({"attributes": {"request": {"http": {"method": "GET"}}}, "identity": {"roles": []}});
        let post = serde_json::json!({"attributes": {"request": {"http": {"method": "POST"}}}, "identity": {"roles": ["user"]}});
        let admin = serde_json::json!({"attributes": {"request": {"http": {"method": "POST"}}}, "identity": {"roles": ["lab-admin"]}});
        assert_eq!(p.rego_allows("data.gateway.lims.allow", get), Ok(true));
        assert_eq!(p.rego_allows("data.gateway.lims.allow", post.clone()), Ok(false));
        assert_eq!(p.rego_allows("data.gateway.lims.allow", admin), Ok(true));
        assert!(p.rego_allows("data.gateway.nope.allow", post).is_err());
        let missing_rule = text.replace("rego: data.gateway.lims.allow", "rego: data.gateway.lims.permit");
        assert!(parse(&missing_rule, "p.yaml", &Known::default()).unwrap_err().to_string().contains("permit"));
        let broken = "routes: []\nregoModules:\n  x.rego: 'package x\n allow if {'\n";
        assert!(parse(broken, "p.yaml", &Known::default()).unwrap_err().to_string().contains("x.rego"));
        let orphan = "routes:\n  - id: r\n    prefix: /x\n    rego: data.x.allow\n";
        assert!(parse(orphan, "p.yaml", &Known::default()).unwrap_err().to_string().contains("no regoModules"));
    }

    #[test]
    fn the_documented_example_parses() {
        let p = parse(include_str!("../policy.example.yaml"), "policy.example.yaml", &Known::default()).unwrap();
        assert_eq!(p.table.len(), 10);
        // The lease API: service tokens only.
        assert!(matches!(
            p.table.find("POST", "/quota/v1/leases/l-1/release"),
            authz_core::routes::Matched::Protected(Some(r)) if r.id == "quota-leases"
        ));
        // nginx's verification needs a credential; the auth service's own endpoints do not.
        assert!(matches!(p.table.find("GET", "/auth/verify"), authz_core::routes::Matched::Protected(Some(_))));
        assert!(matches!(p.table.find("POST", "/auth/login"), authz_core::routes::Matched::Public));
        // The compute route of the example is one.
        assert!(matches!(
            p.table.find("POST", "/api/tes/v1/tasks"),
            authz_core::routes::Matched::Protected(Some(r)) if r.quota.is_some()
        ));
    }

    #[test]
    fn parses_versions_and_refuses_with_the_field() {
        let good = "defaultAction: deny\nroutes:\n  - id: tools\n    prefix: /api/tools\n    rolesAnyOf: [user]\n";
        let p = parse(good, "p.yaml", &Known { public_paths: vec!["/health".into()], ..Known::default() }).unwrap();
        assert_eq!(p.table.len(), 1);
        assert_eq!(p.version.len(), 16);
        let back: authz_core::routes::PolicyDocument = serde_json::from_str(&p.json).unwrap();
        assert_eq!(back.routes.len(), 1);
        let cases = [
            ("routes:\n  - id: t\n    prefix: /x\n    bogus: 1\n", "bogus"),
            ("defaultAction: allow\n", "defaultAction"),
            ("routes:\n  - id: t\n    prefix: x\n", "\"t\""),
            ("routes: [", "policy file"),
        ];
        for (text, want) in cases {
            let err = parse(text, "p.yaml", &Known::default()).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
