//! Route rules as written in configuration (JSON in the filter, YAML in the sidecar), before
//! validation turns them into [`super::Route`]s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::authorize::ClaimCondition;

/// A route rule as written in configuration (JSON in the filter, YAML in the sidecar).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteSpec {
    /// Names the rule in logs and audit events.
    pub id: String,
    /// Exact path (without query).
    #[serde(default)]
    pub path: Option<String>,
    /// Path prefix on segment boundaries: `/api/tes` matches `/api/tes` and `/api/tes/x`, not `/api/tess`.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Path template with named segments: `/api/lims/labs/{lab}/**`.
    #[serde(default)]
    pub template: Option<String>,
    /// Methods (upper case); empty matches any.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Match `path`/`prefix`/`template` literals exactly. By default a protected rule matches
    /// regardless of ASCII case, since Express, ASP.NET and case-insensitive file systems serve
    /// `/ADMIN` as `/admin`; public rules always match exactly (a case variant of a public
    /// path is never public).
    #[serde(default)]
    pub case_sensitive: bool,
    /// No credential needed (identity headers are still removed).
    #[serde(default)]
    pub public: bool,
    /// The identity providers whose tokens this rule accepts (by name; `default` is the
    /// platform's auth service). Empty: the default provider only.
    #[serde(default)]
    pub providers: Vec<String>,
    /// Accepted issuers on this route, instead of the default ones.
    #[serde(default)]
    pub issuers: Option<Vec<String>>,
    /// Accepted audiences on this route, instead of the default ones.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// The token's session must still be alive at the auth service (checked by the sidecar).
    #[serde(default)]
    pub require_session: bool,
    /// The user must have authenticated within this duration (the token's `auth_time`).
    #[serde(default)]
    pub max_auth_age: Option<String>,
    /// The request must carry an `X-Action-Token` whose `action` claim is this value.
    #[serde(default)]
    pub action: Option<String>,
    /// At least one of these roles.
    #[serde(default)]
    pub roles_any_of: Vec<String>,
    /// Every one of these roles.
    #[serde(default)]
    pub roles_all_of: Vec<String>,
    /// Every one of these scopes (`scope`/`scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Conditions on claims (`equals`, `oneOf`, `contains`).
    #[serde(default)]
    pub claims: Vec<ClaimCondition>,
    /// Template parameter → claim that must contain its value: `{lab: labs}`.
    #[serde(default)]
    pub bind: BTreeMap<String, String>,
    /// Only service-to-service tokens (`svc` claim).
    #[serde(default)]
    pub service_only: bool,
    /// A Rego rule (`data.<package>.<rule>`) that must evaluate to `true`, evaluated by the
    /// sidecar (the filter sends these routes to it) over an OPA-Envoy-shaped input.
    #[serde(default)]
    pub rego: Option<String>,
    /// A compute route: every accepted request reserves resources against the caller's quota
    /// (checked by the sidecar, which the filter sends these routes to with their body).
    #[serde(default)]
    pub quota: Option<QuotaSpec>,
    /// Keep the bearer token on the request to the upstream (a service that calls others with
    /// the caller's token). Off: it is removed once verified, as Envoy's `jwt_authn` does
    /// without `forward: true`. API keys are never forwarded.
    #[serde(default)]
    pub forward_credential: bool,
}

/// Where a compute route's requested resources are read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaSpec {
    pub resources: ResourceSource,
}

/// The source of a compute request's resources (see the README's quota section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceSource {
    /// A GA4GH TES task in the JSON body (`resources.cpu_cores`, `ram_gb`, and the GPU count
    /// in `resources.backend_parameters`).
    Tes,
    /// The `X-Compute-Cpu-Cores`, `X-Compute-Gpus` and `X-Compute-Ram-Gb` request headers.
    Headers,
}
