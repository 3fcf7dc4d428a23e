//! Route rules: which requests need no credential, and what a route requires of the caller:
//! issuer and audience, a live session, recent authentication, an action token (401 when
//! missing), and roles, scopes, claim conditions, path-to-claim bindings and service-only
//! access (403, see [`crate::authorize`]). The first matching rule wins; a request no rule
//! matches needs a valid credential with the default issuers and audiences.

use crate::denial::codes;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::authorize::{Requirements, check_endpoint_permissions};
use crate::claims::Scope;
use crate::denial::Denial;
use crate::identity::Identity;
use crate::template::PathTemplate;
use crate::token::TokenError;

/// A rule that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route rule {id:?}: {reason}")]
pub struct RouteError {
    pub id: String,
    pub reason: String,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Route {
    pub id: String,
    path: Option<String>,
    prefix: Option<String>,
    template: Option<PathTemplate>,
    methods: Vec<String>,
    /// Literals match regardless of ASCII case (protected rules unless `caseSensitive`).
    fold_case: bool,
    pub public: bool,
    /// Accepted providers; empty: the default one.
    pub providers: Vec<String>,
    scope: Option<Scope>,
    pub require_session: bool,
    max_auth_age_secs: Option<u64>,
    pub action: Option<String>,
    requirements: Requirements,
    /// Rego rule evaluated by the sidecar, if any.
    pub rego: Option<String>,
    /// Set on compute routes (quota checked by the sidecar).
    pub quota: Option<QuotaSpec>,
    /// The bearer token goes on to the upstream.
    pub forward_credential: bool,
}

impl TryFrom<RouteSpec> for Route {
    type Error = RouteError;

    fn try_from(s: RouteSpec) -> Result<Self, RouteError> {
        let err = |reason: &str| RouteError { id: s.id.clone(), reason: reason.to_string() };
        let matchers =
            usize::from(s.path.is_some()) + usize::from(s.prefix.is_some()) + usize::from(s.template.is_some());
        if matchers != 1 {
            return Err(err("needs exactly one of `path`, `prefix` or `template`"));
        }
        if s.path.iter().chain(&s.prefix).any(|p| !p.starts_with('/')) {
            return Err(err("`path`/`prefix` must start with '/'"));
        }
        let mut template = s.template.as_deref().map(PathTemplate::parse).transpose().map_err(|e| err(&e))?;
        let fold_case = !s.public && !s.case_sensitive;
        if let Some(t) = &mut template {
            t.set_fold_case(fold_case);
        }
        let requirements = Requirements {
            roles_any_of: s.roles_any_of,
            roles_all_of: s.roles_all_of,
            scopes: s.scopes,
            claims: s.claims,
            bind: s.bind,
            service_only: s.service_only,
        };
        for c in &requirements.claims {
            c.validate().map_err(|e| err(&e))?;
        }
        for param in requirements.bind.keys() {
            if !template.as_ref().is_some_and(|t| t.params().any(|p| p == param)) {
                return Err(err(&format!("`bind` names {param:?}, which is not a parameter of `template`")));
            }
        }
        // OPA-Envoy's decision path form (`envoy/authz/allow`) names `data.envoy.authz.allow`.
        let rego = s.rego.as_deref().map(rego_rule);
        if rego.as_deref().is_some_and(|r| r == "data." || r.contains(char::is_whitespace)) {
            return Err(err("`rego` must name a rule as data.<package>.<rule> or <package path>/<rule>"));
        }
        // A public rule may carry `rego`: evaluated before (without) authentication, with no
        // identity in its input (anonymous routes, or a policy that reads Basic auth itself).
        let demands = s.quota.is_some()
            || s.require_session
            || s.max_auth_age.is_some()
            || s.action.is_some()
            || s.audiences.is_some()
            || !s.providers.is_empty()
            || requirements != Requirements::default();
        if s.public && demands {
            return Err(err("a `public` route cannot carry authentication requirements"));
        }
        let max_auth_age_secs = match &s.max_auth_age {
            Some(d) => Some(crate::duration::parse(d).map_err(|e| err(&format!("maxAuthAge: {e}")))?.as_secs()),
            None => None,
        };
        let scope = match (s.issuers.clone(), s.audiences.clone()) {
            (None, None) => None,
            (issuers, audiences) => {
                Some(Scope { issuers: issuers.unwrap_or_default(), audiences: audiences.unwrap_or_default() })
            }
        };
        Ok(Self {
            id: s.id,
            path: s.path,
            prefix: s.prefix.map(|p| p.trim_end_matches('/').to_string()),
            template,
            methods: s.methods.iter().map(|m| m.to_ascii_uppercase()).collect(),
            fold_case,
            public: s.public,
            providers: s.providers,
            scope,
            require_session: s.require_session,
            max_auth_age_secs,
            action: s.action,
            requirements,
            rego,
            quota: s.quota,
            forward_credential: s.forward_credential,
        })
    }
}

impl Route {
    /// Whether tokens of provider `name` may call this route.
    pub fn accepts_provider(&self, name: &str) -> bool {
        if self.providers.is_empty() {
            return name == crate::provider::DEFAULT;
        }
        self.providers.iter().any(|p| p == name)
    }

    pub fn has_max_auth_age(&self) -> bool {
        self.max_auth_age_secs.is_some()
    }

    /// Text every path this rule matches starts with (see `routes::index`).
    fn literal_prefix(&self) -> &str {
        match (&self.path, &self.prefix, &self.template) {
            (Some(p), _, _) | (None, Some(p), _) => p,
            // A template also matches its literal without the trailing slash (`/x/**` matches `/x`).
            (None, None, Some(t)) => t.literal_prefix().trim_end_matches('/'),
            (None, None, None) => "",
        }
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.matches_path(path) && (self.methods.is_empty() || self.methods.iter().any(|m| m == method))
    }

    fn matches_path(&self, path: &str) -> bool {
        let fold = self.fold_case;
        // A protected rule also covers its literal with a suffix (`/admin.json`): Spring MVC's
        // suffix pattern matching and content negotiation route that to `/admin`.
        let suffixed = |rest: &str| fold && rest.starts_with('.');
        match (&self.path, &self.prefix, &self.template) {
            (Some(p), _, _) => {
                p == path
                    || fold && p.eq_ignore_ascii_case(path)
                    || crate::template::strip_prefix_folded(path, p, fold)
                        .is_some_and(|r| suffixed(r) && !r.contains('/'))
            }
            (None, Some(prefix), _) => crate::template::strip_prefix_folded(path, prefix, fold)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || suffixed(rest)),
            (None, None, Some(t)) => t.matches(path),
            (None, None, None) => false,
        }
    }

    /// The RBAC/ABAC requirements (roles, scopes, claims, bindings, service-only, the
    /// token's `endpoint_permissions`) on `path` (without query). API keys are judged by
    /// these alone.
    pub fn authorize(&self, id: &Identity, path: &str) -> Result<(), Denial> {
        check_endpoint_permissions(id, path)?;
        let params = self.template.as_ref().and_then(|t| t.captures(path)).unwrap_or_default();
        self.requirements.check(id, &params)
    }

    /// Every requirement that needs no I/O, checked against an authenticated identity.
    /// `action_token` is the verified `X-Action-Token`, if the request carried one; `path` is
    /// without its query string.
    pub fn check(
        &self,
        default_scope: &Scope,
        id: &Identity,
        action_token: Option<Result<&Identity, &TokenError>>,
        path: &str,
        now: u64,
    ) -> Result<(), Denial> {
        let scope = self.scope.as_ref().unwrap_or(default_scope);
        scope.check(id.issuer.as_deref(), &id.audiences).map_err(|e| Denial::from_token_error(&e))?;
        if let Some(max) = self.max_auth_age_secs {
            let fresh = id.auth_time.is_some_and(|t| now.saturating_sub(t) <= max);
            if !fresh {
                return Err(Denial::unauthorized(
                    codes::REAUTHENTICATION_REQUIRED,
                    "a more recent sign-in is required",
                ));
            }
        }
        if let Some(action) = &self.action {
            match action_token {
                None => {
                    return Err(Denial::unauthorized(
                        codes::ACTION_TOKEN_REQUIRED,
                        "this action needs an action token",
                    ));
                }
                Some(Err(_)) => {
                    return Err(Denial::unauthorized(codes::ACTION_TOKEN_INVALID, "the action token was refused"));
                }
                Some(Ok(t)) => {
                    // The same issuers and audiences as the request's own token: an action
                    // token from a foreign issuer or for another audience authorises nothing.
                    let in_scope = scope.check(t.issuer.as_deref(), &t.audiences).is_ok();
                    if !in_scope || t.action.as_deref() != Some(action.as_str()) || t.user_id != id.user_id {
                        return Err(Denial::unauthorized(codes::ACTION_TOKEN_INVALID, "the action token was refused"));
                    }
                }
            }
        }
        self.authorize(id, path)
    }
}

/// What a request matched.
#[derive(Debug, Clone, Copy)]
pub enum Matched<'a> {
    /// No credential needed.
    Public,
    /// No credential read, but a Rego rule decides first (a `public` rule with `rego`).
    PublicRego(&'a Route),
    /// A rule with requirements, or `None` for the default (authenticated, default scope).
    Protected(Option<&'a Route>),
    /// No rule matched and the policy denies unmatched requests (403 `no_matching_rule`).
    NoRule,
}

/// What happens to a request that no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultAction {
    /// A valid credential with the default issuers and audiences suffices.
    #[default]
    Authenticated,
    /// Refused: every allowed route must be listed.
    Deny,
}

/// A policy as written: the sidecar's policy file (YAML), pushed to the filters as JSON.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(default)]
    pub default_action: DefaultAction,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    /// Rego modules (name → source) for the routes' `rego` rules; used by the sidecar only.
    #[serde(default)]
    pub rego_modules: BTreeMap<String, String>,
    /// Leave the credential headers (`authorization`, `x-api-key`, `x-action-token`) out of
    /// Rego's input (OPA-Envoy passes them; default: passed).
    #[serde(default)]
    pub rego_hide_credentials: bool,
}

impl PolicyDocument {
    /// The version of a policy text: the first 16 hex digits of its SHA-256.
    pub fn version_of(text: &str) -> String {
        use sha2::Digest as _;
        sha2::Sha256::digest(text.as_bytes()).iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// The ordered rules plus the always-public paths.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    public_paths: Vec<String>,
    public_prefixes: Vec<String>,
    routes: Vec<Route>,
    default_action: DefaultAction,
    /// Built when the table is large enough to need it.
    index: Option<index::PrefixIndex>,
}

impl RouteTable {
    pub fn new(
        public_paths: Vec<String>,
        public_prefixes: Vec<String>,
        specs: Vec<RouteSpec>,
    ) -> Result<Self, RouteError> {
        let routes = specs.into_iter().map(Route::try_from).collect::<Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = routes.iter().find(|r| !seen.insert(r.id.clone())) {
            return Err(RouteError { id: dup.id.clone(), reason: "duplicate rule id".into() });
        }
        let index = (routes.len() >= index::MIN_RULES)
            .then(|| index::PrefixIndex::build(routes.iter().map(Route::literal_prefix)));
        Ok(Self { public_paths, public_prefixes, routes, default_action: DefaultAction::Authenticated, index })
    }

    /// A table from a policy document plus the host's always-public paths.
    pub fn from_document(
        public_paths: Vec<String>,
        public_prefixes: Vec<String>,
        doc: PolicyDocument,
    ) -> Result<Self, RouteError> {
        let mut t = Self::new(public_paths, public_prefixes, doc.routes)?;
        t.default_action = doc.default_action;
        Ok(t)
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    /// The top-level claims beyond the typed ones that the rules read (claim conditions and
    /// `bind`), sorted: what a cache of identities checked against this table must keep.
    pub fn claims_read(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .routes
            .iter()
            .flat_map(|r| {
                let conditions = r.requirements.claims.iter().map(|c| c.claim.as_str());
                conditions.chain(r.requirements.bind.values().map(String::as_str))
            })
            .map(|name| crate::identity::claim_root(name).into_owned())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }

    /// Public paths only (no rules): what the vertical slice used.
    pub fn public_only(public_paths: Vec<String>) -> Self {
        Self { public_paths, ..Self::default() }
    }

    /// Whether a rule that names methods covers `path`: a method override there (`_method`)
    /// could make the upstream act on a method the policy did not judge.
    pub fn depends_on_method(&self, path: &str) -> bool {
        let path = path_only(path);
        self.routes.iter().any(|r| !r.methods.is_empty() && r.matches_path(path))
    }

    /// The rule for a request. `path` may carry a query string.
    pub fn find(&self, method: &str, path: &str) -> Matched<'_> {
        let path = path_only(path);
        if self.public_paths.iter().any(|p| p == path)
            || self.public_prefixes.iter().any(|p| path.starts_with(p.as_str()))
        {
            return Matched::Public;
        }
        let found = match &self.index {
            Some(index) => index
                .candidates(path)
                .into_iter()
                .filter_map(|i| self.routes.get(i as usize))
                .find(|r| r.matches(method, path)),
            None => self.routes.iter().find(|r| r.matches(method, path)),
        };
        match found {
            Some(r) if r.public && r.rego.is_some() => Matched::PublicRego(r),
            Some(r) if r.public => Matched::Public,
            None if self.default_action == DefaultAction::Deny => Matched::NoRule,
            other => Matched::Protected(other),
        }
    }
}

/// The rule a route's `rego` names: `data.<package>.<rule>` as written, or OPA-Envoy's decision
/// path form (`envoy/authz/allow` is `data.envoy.authz.allow`).
pub fn rego_rule(path: &str) -> String {
    if path.starts_with("data.") {
        path.to_string()
    } else {
        format!("data.{}", path.trim_matches('/').replace('/', "."))
    }
}

/// A request path without its query string or fragment.
pub fn path_only(path: &str) -> &str {
    match path.bytes().position(|b| b == b'?' || b == b'#') {
        Some(at) => &path[..at],
        None => path,
    }
}

mod index;
mod spec;

pub use spec::{QuotaSpec, ResourceSource, RouteSpec};
#[cfg(test)]
mod tests;
