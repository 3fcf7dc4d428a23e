//! `envoy.service.auth.v3.Authorization/Check`: a complete ext_authz server.
//!
//! Used two ways: by the wasm filter for what it cannot decide alone, and directly by Envoy's
//! native `ext_authz` filter. Either way the request gets the same pipeline as in the filter
//! (`authz-core`): strip identity headers, fix the trace id, authenticate, project identity
//! headers; on compute routes, last, the quota lease (`quota`). The sidecar's own outages
//! (keys, the auth service or, for compute routes, Redis unavailable) are gRPC `UNAVAILABLE`,
//! so Envoy applies its failure mode (503) instead of seeing a denial. Every answer carries the
//! decision's audit record as `dynamic_metadata` (see `access_log`).

use std::sync::Arc;

use authz_core::api_key_format::ApiKeyFormat;
use authz_core::authenticator::LocalVerdict;
use authz_core::cache::digest;
use authz_core::denial::codes;
use authz_core::headers::StripRules;
use authz_core::pipeline::{Answer, CredentialKind, Facts, Need, Outcome, Pipeline, Step, verified};
use authz_core::provider::Providers;
use authz_core::revocation::RevocationSet;
use authz_core::routes::{QuotaSpec, ResourceSource};
use authz_core::token::verify_token_time;
use authz_core::{Denial, Identity, TokenError};
use tracing::warn;

use crate::backend::SharedKv;
use crate::credentials::failures::FailureLimiter;
use crate::credentials::identity_cache::{IdentityCache, unix_now};
use crate::credentials::introspect::Introspector;
use crate::credentials::keystore::KeyStore;
use crate::credentials::provider_keys::KeyStores;
use crate::credentials::revocations::RevocationHub;
use crate::credentials::session::SessionChecker;
use crate::metrics::Metrics;
use crate::policy::{Policy, PolicyStore};
use crate::quota::{Outcome as Reservation, Quota};

mod build;
mod credentials;
pub mod rego_input;
mod response;
mod service;
pub mod testing;
#[cfg(test)]
mod tests;

pub use build::{Backends, Shared};
pub use service::AuthzService;

/// What the sidecar needs to decide.
pub struct Decider {
    /// Every provider's keys, in the order of `providers`.
    pub keys: KeyStores,
    pub cache: IdentityCache,
    pub introspector: Introspector,
    pub sessions: SessionChecker,
    /// The identity providers (`jwt` and `jwks` the default one, then `providers`).
    pub providers: Providers,
    pub strip: StripRules,
    pub policy: Arc<PolicyStore>,
    pub revocations: Arc<RevocationHub>,
    pub metrics: Arc<Metrics>,
    pub quota: Arc<Quota>,
    /// The claim naming the caller's lab/tenant (audit records).
    pub tenant_claim: String,
    /// Where used action-token `jti`s are held (`actionTokens.singleUse`), or `None`.
    pub action_jtis: Option<Arc<dyn SharedKv>>,
    /// The shape API keys must have before the auth service is asked (`apiKeys.format`).
    pub api_key_format: ApiKeyFormat,
    /// Failed credentials per client (`failedCredentials`).
    pub failures: FailureLimiter,
}

/// A refusal of [`Decider::service_identity`].
#[derive(Debug)]
pub enum Decision {
    Deny(Denial),
    /// We cannot decide right now (keys or the auth service unavailable).
    Unavailable(&'static str),
}

/// Why no identity was found for a token.
enum Lookup {
    Refused(TokenError),
    Unavailable(&'static str),
}

/// The pipeline's view of the sidecar: verification is a need (the identity cache and the key
/// refresh are I/O), the revocation set is current once the stored revocations are loaded.
struct SidecarFacts<'a> {
    now: u64,
    revocations: Option<&'a RevocationSet>,
    providers: &'a Providers,
    api_key_format: &'a ApiKeyFormat,
}

impl Facts for SidecarFacts<'_> {
    fn now(&self) -> u64 {
        self.now
    }

    fn authenticate(&mut self, _token: &str) -> LocalVerdict {
        LocalVerdict::Unknown
    }

    fn revocations(&self) -> Option<&RevocationSet> {
        self.revocations
    }

    fn providers(&self) -> &Providers {
        self.providers
    }

    fn api_key_format(&self) -> &ApiKeyFormat {
        self.api_key_format
    }
}

/// What a need is satisfied with besides the pipeline: the policy (Rego), the body (quota),
/// the client address (failure limits).
pub struct Extras<'a> {
    pub policy: &'a Policy,
    pub body: &'a [u8],
    pub client: &'a str,
    /// What the `CheckRequest` says of the request beyond its headers (Rego's input).
    pub attrs: &'a rego_input::Attributes,
    /// The Rego decision's effects (OPA-Envoy's object form), applied to the answer.
    pub decision: std::sync::Mutex<Option<crate::policy::RegoDecision>>,
}

impl Decider {
    /// Runs `pipeline` to its outcome, satisfying each need it reports.
    pub async fn drive<'a>(&self, pipeline: &mut Pipeline<'a, String>, extras: &Extras<'_>) -> Outcome {
        let now = unix_now();
        let revocations = self.revocations.current();
        loop {
            let mut facts = SidecarFacts {
                now,
                // Until the stored revocations are loaded, no credential can be known not revoked.
                revocations: revocations.synced.then_some(&revocations.set),
                providers: &self.providers,
                api_key_format: &self.api_key_format,
            };
            let need = match pipeline.eval(&mut facts) {
                Step::Done(outcome) => {
                    if pipeline.credential() == CredentialKind::ApiKey
                        && matches!(&outcome, Outcome::Deny { denial, .. } if denial.code == codes::API_KEY_MALFORMED)
                    {
                        self.failures.failed(extras.client).await;
                    }
                    return outcome;
                }
                Step::Need(need) => need,
            };
            let answer = self.satisfy(need, pipeline, extras, now).await;
            pipeline.digest(answer);
        }
    }

    async fn satisfy(&self, need: Need<'_>, pipeline: &Pipeline<'_, String>, extras: &Extras<'_>, now: u64) -> Answer {
        match need {
            // The sidecar always decides with its policy.
            Need::Policy => Answer::Unavailable("policy unavailable"),
            Need::Revocations => Answer::Unavailable("revocation state unavailable"),
            Need::Verify { token, .. } => match self.identity(token, now).await {
                Ok(id) => {
                    let mapped = self.providers.get(id.provider.as_deref()).map_or(&[][..], |p| &p.claim_headers);
                    Answer::Verified(Ok(verified(id, token, mapped)))
                }
                Err(Lookup::Refused(e)) => Answer::Verified(Err(e)),
                Err(Lookup::Unavailable(reason)) => Answer::Unavailable(reason),
            },
            Need::ApiKey(key) => self.api_key(key, extras.client).await,
            Need::Session(token) => match self.sessions.is_alive(token).await {
                Ok(alive) => Answer::Session(alive),
                Err(e) => {
                    warn!(error = %e, "session validation unavailable");
                    Answer::Unavailable("auth service unavailable")
                }
            },
            Need::SpendActionToken(action) => self.spend_action_token(&action.identity, now).await,
            Need::Rego(rule) => {
                // No caller before authentication (a public rule with `rego`).
                let identity = pipeline.caller().map(|c| &*c.identity);
                let r = pipeline.request();
                let hide = extras.policy.hide_credentials();
                let input = rego_input::build(extras.attrs, r.method, r.path, r.headers, extras.body, identity, hide);
                match extras.policy.rego_decide(rule, input) {
                    Ok(d) => {
                        let allowed = d.allowed;
                        if let Ok(mut slot) = extras.decision.lock() {
                            *slot = Some(d);
                        }
                        Answer::Rego(Ok(allowed))
                    }
                    Err(e) => {
                        warn!(error = %e, rule, "rego evaluation failed; denying");
                        Answer::Rego(Err(()))
                    }
                }
            }
            Need::Quota(spec) => match pipeline.caller() {
                Some(caller) => self.reserve(spec, &caller.identity, pipeline.request().headers, extras.body).await,
                None => Answer::Unavailable("quota needs a caller"),
            },
        }
    }

    /// The quota step of a compute route, after everything else allowed the request.
    async fn reserve(&self, spec: QuotaSpec, id: &Identity, headers: &[(String, String)], body: &[u8]) -> Answer {
        if body.is_empty() && spec.resources == ResourceSource::Tes && announces_body(headers) {
            // The caller (a filter without the policy yet, or an ext_authz without
            // `with_request_body`) did not forward the body: we cannot know what is asked.
            return Answer::Unavailable("request body not forwarded");
        }
        match self.quota.reserve(spec, id, headers, body).await {
            Reservation::Granted { lease_id } => Answer::Leased(lease_id),
            Reservation::Refused(r) => Answer::Denied(
                Denial::forbidden(codes::QUOTA_EXCEEDED, "the request exceeds a quota limit"),
                serde_json::json!(r),
            ),
            Reservation::Invalid(reason) => Answer::Denied(
                Denial {
                    status: 400,
                    code: codes::QUOTA_REQUEST_INVALID,
                    message: "the requested resources could not be read",
                },
                serde_json::json!({ "detail": reason }),
            ),
            Reservation::Unavailable => Answer::Unavailable("quota store unavailable"),
        }
    }

    /// A service-to-service caller (a verified, unrevoked token with the `svc` claim), for the
    /// quota lease API. `Err` carries the refusal.
    pub async fn service_identity(&self, token: &str) -> Result<Arc<Identity>, Decision> {
        let revocations = self.revocations.current();
        if !revocations.synced {
            return Err(Decision::Unavailable("revocation state unavailable"));
        }
        let id = match self.identity(token, unix_now()).await {
            Ok(id) => id,
            Err(Lookup::Refused(e)) => return Err(Decision::Deny(Denial::from_token_error(&e))),
            Err(Lookup::Unavailable(reason)) => return Err(Decision::Unavailable(reason)),
        };
        if revocations.set.is_revoked(&id) {
            return Err(Decision::Deny(Denial::unauthorized(codes::TOKEN_REVOKED, "the token was revoked")));
        }
        if id.service.is_none() {
            return Err(Decision::Deny(Denial::forbidden(codes::SERVICE_ONLY, "only services may manage leases")));
        }
        Ok(id)
    }

    /// The identity of a JWT, route-independent: cache, else verify (refreshing the keys once
    /// for an unknown `kid`).
    async fn identity(&self, token: &str, now: u64) -> Result<Arc<Identity>, Lookup> {
        let key = digest(token);
        if let Some(id) = self.cache.get(&key, now).await {
            // Only while the key that verified it is still trusted (see `Authenticator`), by a
            // provider still configured.
            let trusted =
                |store: &Arc<KeyStore>| id.key_id.as_deref().is_none_or(|kid| store.current().keys.has_kid(kid));
            if self.keys.by_name(id.provider.as_deref()).is_some_and(trusted) {
                return Ok(id);
            }
        }
        // The provider by the token's `iss`, before any key is tried.
        let i = self.providers.select(token);
        let (store, claims) = (self.keys.get(i), &self.providers.nth(i).claims);
        let mut result = verify_token_time(token, &store.current().keys, claims, now);
        if matches!(result, Err(TokenError::UnknownKey)) && store.refresh_for_unknown_kid().await {
            result = verify_token_time(token, &store.current().keys, claims, now);
        }
        match result.and_then(|c| self.providers.identity(i, c, now)) {
            Ok(id) => {
                let id = Arc::new(id);
                self.cache.put(key, Arc::clone(&id), now).await;
                Ok(id)
            }
            Err(TokenError::UnknownKey) if !store.current().jwks_loaded => {
                Err(Lookup::Unavailable("signing keys unavailable"))
            }
            Err(e) => Err(Lookup::Refused(e)),
        }
    }
}

/// True when the request says it has a body (so an empty forwarded one was cut off).
fn announces_body(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| {
        (k == "content-length" && v.trim().parse::<u64>().is_ok_and(|n| n > 0)) || k == "transfer-encoding"
    })
}
