//! `envoy.service.auth.v3.Authorization/Check`: a complete ext_authz server.
//!
//! Used two ways: by the wasm filter for what it cannot decide alone, and directly by Envoy's
//! native `ext_authz` filter. Either way the request gets the same pipeline as in the filter
//! (`authz-core`): strip identity headers, fix the trace id, authenticate, project identity
//! headers; on compute routes, last, the quota lease (`quota`). The sidecar's own outages
//! (keys, the auth service or, for compute routes, Redis unavailable) are gRPC `UNAVAILABLE`,
//! so Envoy applies its failure mode (503) instead of seeing a denial. Every answer carries the
//! decision's audit record as `dynamic_metadata` (see `access_log`).

use authz_core::denial::codes;
use std::sync::Arc;

use authz_core::authorize::check_endpoint_permissions;
use authz_core::cache::digest;
use authz_core::credential::{self, Credential};
use authz_core::headers::{StripRules, X_ACTION_TOKEN};
use authz_core::path_guard;
use authz_core::request::{Sanitized, sanitize};
use authz_core::routes::{self, Matched, QuotaSpec, ResourceSource, Route};
use authz_core::token::verify_token_time;
use authz_core::{ClaimsPolicy, Denial, Identity, TokenError};
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use tonic::{Request, Response, Status};
use tracing::{Span, debug, warn};

use crate::failures::FailureLimiter;
use crate::identity_cache::{IdentityCache, unix_now};
use crate::introspect::Introspector;
use crate::keystore::KeyStore;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyStore};
use crate::quota::{Outcome, Quota};
use crate::redis_kv::RedisKv;
use crate::revocations::RevocationHub;
use crate::session::SessionChecker;
use authz_core::api_key_format::ApiKeyFormat;
use envoy_types::pb::envoy::config::core::v3::address::Address;

mod credentials;
mod response;

use response::{Record, allow, deny};

/// What the sidecar needs to decide.
pub struct Decider {
    pub keys: Arc<KeyStore>,
    pub cache: IdentityCache,
    pub introspector: Introspector,
    pub sessions: SessionChecker,
    pub claims: ClaimsPolicy,
    pub strip: StripRules,
    pub policy: Arc<PolicyStore>,
    pub revocations: Arc<RevocationHub>,
    pub metrics: Arc<Metrics>,
    pub quota: Arc<Quota>,
    /// The claim naming the caller's lab/tenant (audit records).
    pub tenant_claim: String,
    /// Where used action-token `jti`s are held (`actionTokens.singleUse`), or `None`.
    pub action_jtis: Option<RedisKv>,
    /// The shape API keys must have before the auth service is asked (`apiKeys.format`).
    pub api_key_format: ApiKeyFormat,
    /// Failed credentials per client (`failedCredentials`).
    pub failures: FailureLimiter,
}

/// A decision before it is turned into a `CheckResponse`.
#[derive(Debug)]
pub enum Decision {
    Allow(Option<Arc<Identity>>),
    /// Allowed on a compute route, holding this quota lease.
    Leased(Arc<Identity>, String),
    Deny(Denial),
    /// Refused, with more to say in the body (merged into the denial's JSON), and the caller
    /// when known (for the audit record).
    DenyWith(Denial, serde_json::Value, Option<Arc<Identity>>),
    /// We cannot decide right now (keys or the auth service unavailable).
    Unavailable(&'static str),
}

impl Decider {
    /// Decides a request under `policy`, whose rule for it the caller looked up (`matched`,
    /// also named in the audit record); `body` is only read on compute routes.
    /// `client` is Envoy's downstream address (empty when unknown), for per-client limits.
    #[allow(clippy::too_many_arguments)]
    pub async fn decide(
        &self,
        policy: &Policy,
        matched: Matched<'_>,
        method: &str,
        path: &str,
        req: &Sanitized<String>,
        body: &[u8],
        client: &str,
    ) -> Decision {
        // Before any rule: a path an upstream could read differently from the policy.
        if let Err(d) = path_guard::check(path) {
            return Decision::Deny(d);
        }
        if path_guard::has_method_param(path) && policy.table.depends_on_method(path) {
            return Decision::Deny(path_guard::METHOD_OVERRIDE);
        }
        let route = match matched {
            Matched::Public => return Decision::Allow(None),
            Matched::NoRule => {
                return Decision::Deny(Denial::forbidden(
                    codes::NO_MATCHING_RULE,
                    "no policy rule allows this request",
                ));
            }
            Matched::Protected(route) => route,
        };
        let credential = credential::extract(&req.headers);
        if matches!(credential, Credential::Bearer(_) | Credential::ApiKey(_)) && !self.revocations.current().synced {
            // Until the stored revocations are loaded, no credential can be known not revoked.
            return Decision::Unavailable("revocation state unavailable");
        }
        let decision = match credential {
            Credential::None => Decision::Deny(Denial::missing_credential()),
            Credential::Invalid(code) => Decision::Deny(Denial::invalid_credential(code)),
            Credential::ApiKey(key) => self.api_key(route, routes::path_only(path), key, client).await,
            Credential::Bearer(token) => match self.bearer(route, routes::path_only(path), token, &req.headers).await {
                Ok(id) => Decision::Allow(Some(id)),
                Err(d) => d,
            },
        };
        let decision = match (decision, route.and_then(|r| r.rego.as_deref())) {
            (Decision::Allow(Some(id)), Some(rule)) => {
                let input = rego_input(method, path, &req.headers, &id);
                // The caller is known: a refusal names it in the audit record.
                let refused = |d: Denial, id: Arc<Identity>| Decision::DenyWith(d, serde_json::Value::Null, Some(id));
                match policy.rego_allows(rule, input) {
                    Ok(true) => Decision::Allow(Some(id)),
                    Ok(false) => refused(Denial::forbidden(codes::POLICY_DENIED, "the policy denies this request"), id),
                    Err(e) => {
                        warn!(error = %e, rule, "rego evaluation failed; denying");
                        refused(Denial::forbidden(codes::POLICY_ERROR, "the policy could not be evaluated"), id)
                    }
                }
            }
            (d, _) => d,
        };
        match (decision, route.and_then(|r| r.quota)) {
            (Decision::Allow(Some(id)), Some(spec)) => self.reserve(spec, id, &req.headers, body).await,
            (d, _) => d,
        }
    }

    /// The quota step of a compute route, after everything else allowed the request.
    async fn reserve(&self, spec: QuotaSpec, id: Arc<Identity>, headers: &[(String, String)], body: &[u8]) -> Decision {
        if body.is_empty() && spec.resources == ResourceSource::Tes && announces_body(headers) {
            // The caller (a filter without the policy yet, or an ext_authz without
            // `with_request_body`) did not forward the body: we cannot know what is asked.
            return Decision::Unavailable("request body not forwarded");
        }
        match self.quota.reserve(spec, &id, headers, body).await {
            Outcome::Granted { lease_id } => Decision::Leased(id, lease_id),
            Outcome::Refused(r) => Decision::DenyWith(
                Denial::forbidden(codes::QUOTA_EXCEEDED, "the request exceeds a quota limit"),
                serde_json::json!(r),
                Some(id),
            ),
            Outcome::Invalid(reason) => Decision::DenyWith(
                Denial {
                    status: 400,
                    code: codes::QUOTA_REQUEST_INVALID,
                    message: "the requested resources could not be read",
                },
                serde_json::json!({ "detail": reason }),
                Some(id),
            ),
            Outcome::Unavailable => Decision::Unavailable("quota store unavailable"),
        }
    }

    async fn bearer(
        &self,
        route: Option<&Route>,
        path: &str,
        token: &str,
        headers: &[(String, String)],
    ) -> Result<Arc<Identity>, Decision> {
        let now = unix_now();
        let id = self.identity(token, now).await?;
        // Once the caller is known, a refusal names it in the audit record, as the filter's does.
        match self.bearer_checks(route, path, token, headers, &id, now).await {
            Ok(()) => Ok(id),
            Err(Decision::Deny(d)) => Err(Decision::DenyWith(d, serde_json::Value::Null, Some(id))),
            Err(other) => Err(other),
        }
    }

    /// Everything about a verified bearer token after its identity: revocation, issuer and
    /// audience, the route's requirements, a live session, the action token.
    async fn bearer_checks(
        &self,
        route: Option<&Route>,
        path: &str,
        token: &str,
        headers: &[(String, String)],
        id: &Identity,
        now: u64,
    ) -> Result<(), Decision> {
        if self.revocations.current().set.is_revoked(id) {
            return Err(Decision::Deny(Denial::unauthorized(codes::TOKEN_REVOKED, "the token was revoked")));
        }
        let scope = self.claims.scope();
        let Some(route) = route else {
            scope
                .check(id.issuer.as_deref(), &id.audiences)
                .map_err(|e| Decision::Deny(Denial::from_token_error(&e)))?;
            check_endpoint_permissions(id, path).map_err(Decision::Deny)?;
            return Ok(());
        };
        let action = match (&route.action, headers.iter().find(|(k, _)| k == X_ACTION_TOKEN)) {
            (Some(_), Some((_, t))) => Some(match self.identity(t, now).await {
                Ok(a) => Ok(a),
                Err(Decision::Deny(_)) => Err(TokenError::Malformed),
                Err(other) => return Err(other),
            }),
            _ => None,
        };
        let action_ref = action.as_ref().map(|r| r.as_ref().map(|a| &**a));
        route.check(&scope, id, action_ref, path, now).map_err(Decision::Deny)?;
        if route.require_session {
            match self.sessions.is_alive(token).await {
                Ok(true) => {}
                Ok(false) => {
                    return Err(Decision::Deny(Denial::unauthorized(codes::SESSION_INVALID, "the session has ended")));
                }
                Err(e) => {
                    warn!(error = %e, "session validation unavailable");
                    return Err(Decision::Unavailable("auth service unavailable"));
                }
            }
        }
        if let Some(Ok(action)) = &action {
            self.spend_action_token(action, now).await?;
        }
        Ok(())
    }

    /// A service-to-service caller (a verified, unrevoked token with the `svc` claim), for the
    /// quota lease API. `Err` carries the refusal.
    pub async fn service_identity(&self, token: &str) -> Result<Arc<Identity>, Decision> {
        if !self.revocations.current().synced {
            return Err(Decision::Unavailable("revocation state unavailable"));
        }
        let id = self.identity(token, unix_now()).await?;
        if self.revocations.current().set.is_revoked(&id) {
            return Err(Decision::Deny(Denial::unauthorized(codes::TOKEN_REVOKED, "the token was revoked")));
        }
        if id.service.is_none() {
            return Err(Decision::Deny(Denial::forbidden(codes::SERVICE_ONLY, "only services may manage leases")));
        }
        Ok(id)
    }

    /// The identity of a JWT, route-independent: cache, else verify (refreshing the keys once
    /// for an unknown `kid`).
    async fn identity(&self, token: &str, now: u64) -> Result<Arc<Identity>, Decision> {
        let key = digest(token);
        if let Some(id) = self.cache.get(&key, now).await {
            // Only while the key that verified it is still trusted (see `Authenticator`).
            if id.key_id.as_deref().is_none_or(|kid| self.keys.current().keys.has_kid(kid)) {
                return Ok(id);
            }
        }
        let mut result = verify_token_time(token, &self.keys.current().keys, &self.claims, now);
        if matches!(result, Err(TokenError::UnknownKey)) && self.keys.refresh_for_unknown_kid().await {
            result = verify_token_time(token, &self.keys.current().keys, &self.claims, now);
        }
        match result.and_then(Identity::from_claims) {
            Ok(id) => {
                let id = Arc::new(id);
                self.cache.put(key, Arc::clone(&id), now).await;
                Ok(id)
            }
            Err(TokenError::UnknownKey) if !self.keys.current().jwks_loaded => {
                Err(Decision::Unavailable("signing keys unavailable"))
            }
            Err(e) => Err(Decision::Deny(Denial::from_token_error(&e))),
        }
    }
}

/// The input of a Rego rule, shaped like the OPA-Envoy plugin's (`input.attributes.request.http`,
/// `input.parsed_path`) plus `input.identity`. Credential headers are left out.
fn rego_input(method: &str, path: &str, headers: &[(String, String)], id: &Identity) -> serde_json::Value {
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "authorization" | "x-api-key" | "x-action-token") && !k.starts_with(':'))
        .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
        .collect();
    let parsed_path: Vec<&str> = routes::path_only(path).split('/').filter(|s| !s.is_empty()).collect();
    serde_json::json!({
        "attributes": {"request": {"http": {"method": method, "path": path, "headers": headers}}},
        "parsed_path": parsed_path,
        "identity": {
            "user_id": id.user_id, "email": id.email, "roles": id.roles, "scopes": id.scopes,
            "service": id.service, "claims": id.claims,
        },
    })
}

/// The tonic service.
pub struct AuthzService {
    decider: Arc<Decider>,
}

impl AuthzService {
    pub fn new(decider: Arc<Decider>) -> Self {
        Self { decider }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    #[tracing::instrument(name = "check", skip_all, fields(trace_id, result, policy_version))]
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let started = std::time::Instant::now();
        let answer = self.answer(request).await;
        self.decider.metrics.check_duration.observe(started.elapsed().as_secs_f64());
        answer
    }
}

impl AuthzService {
    async fn answer(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let client = match attributes.source.and_then(|p| p.address).and_then(|a| a.address) {
            Some(Address::SocketAddress(s)) => s.address,
            _ => String::new(),
        };
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let req = sanitize(request_headers(&http), &self.decider.strip, || *uuid::Uuid::new_v4().as_bytes());
        let span = Span::current();
        span.record("trace_id", req.trace_id.as_str());
        let policy = self.decider.policy.current();
        span.record("policy_version", policy.version.as_str());
        // Envoy sends the body as bytes (`raw_body`) when `pack_as_bytes` is set, else as text.
        let body = if http.raw_body.is_empty() { http.body.as_bytes() } else { http.raw_body.as_slice() };
        let matched = policy.table.find(&http.method, &http.path);
        let rule = match matched {
            Matched::Protected(Some(r)) => r.id.as_str(),
            _ => "",
        };
        let decision = self.decider.decide(&policy, matched, &http.method, &http.path, &req, body, &client).await;
        let record = Record::new(&req, rule, &policy.version);
        let metrics = &self.decider.metrics;
        let tenant_claim = self.decider.tenant_claim.as_str();
        match decision {
            Decision::Allow(id) => {
                span.record("result", "allow");
                metrics.checks.get_or_create(&vec![("result", "allow"), ("code", "ok")]).inc();
                let reason = if id.is_some() { "ok" } else { "public" };
                let meta = record.finish("allow", reason, id.as_deref(), None, tenant_claim);
                Ok(Response::new(allow(&req, id.as_deref(), None, meta)))
            }
            Decision::Leased(id, lease) => {
                span.record("result", "allow");
                metrics.checks.get_or_create(&vec![("result", "allow"), ("code", "ok")]).inc();
                let meta = record.finish("allow", "ok", Some(&id), Some(&lease), tenant_claim);
                Ok(Response::new(allow(&req, Some(&id), Some(&lease), meta)))
            }
            Decision::Deny(d) => {
                span.record("result", d.code);
                debug!(code = d.code, status = d.status, "denied");
                metrics.checks.get_or_create(&vec![("result", "deny"), ("code", d.code)]).inc();
                let meta = record.finish("deny", d.code, None, None, tenant_claim);
                Ok(Response::new(deny(&d, &req.trace_id, None, meta)))
            }
            Decision::DenyWith(d, extra, id) => {
                span.record("result", d.code);
                debug!(code = d.code, status = d.status, "denied");
                metrics.checks.get_or_create(&vec![("result", "deny"), ("code", d.code)]).inc();
                let meta = record.finish("deny", d.code, id.as_deref(), None, tenant_claim);
                Ok(Response::new(deny(&d, &req.trace_id, Some(extra), meta)))
            }
            Decision::Unavailable(reason) => {
                span.record("result", "unavailable");
                metrics.checks.get_or_create(&vec![("result", "unavailable"), ("code", reason)]).inc();
                Err(Status::unavailable(reason))
            }
        }
    }
}

/// True when the request says it has a body (so an empty forwarded one was cut off).
fn announces_body(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        (k == "content-length" && v.trim().parse::<u64>().is_ok_and(|n| n > 0)) || k == "transfer-encoding"
    })
}

/// The request headers, from the `headers` map or (newer Envoy option) `header_map`.
fn request_headers(http: &HttpRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        http.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    if let Some(map) = &http.header_map {
        for h in &map.headers {
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            out.push((h.key.to_ascii_lowercase(), value));
        }
    }
    out
}
