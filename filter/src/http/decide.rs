//! Everything the filter can decide without the network: the credential, local verification
//! and the revocation set, the route rule's local requirements, and what must go to the
//! sidecar instead.

use authz_core::denial::codes;
use std::rc::Rc;
use std::sync::Arc;

use authz_core::Denial;
use authz_core::authenticator::{LocalVerdict, Verified};
use authz_core::authorize::check_endpoint_permissions;
use authz_core::credential::{self, Credential};
use authz_core::headers::X_ACTION_TOKEN;
use authz_core::routes::{self, Route};

use super::Http;
use crate::config::OnStale;
use crate::metrics::Metrics;
use crate::worker::Shared;

/// The local verdict on a request, before it is turned into hostcalls.
pub(super) enum Local {
    Allow(Option<Arc<Verified>>),
    /// Refused; with the caller's identity when it was established (for the audit record).
    Deny(Denial, Option<Arc<Verified>>),
    AskSidecar,
}

impl Http {
    /// Everything the filter can decide without the network.
    pub(super) fn decide(
        &mut self,
        shared: &Shared,
        metrics: Metrics,
        route: Option<&Route>,
        path: &str,
        headers: &[(String, Vec<u8>)],
    ) -> Local {
        let token = match credential::extract(headers) {
            Credential::None => {
                self.credential = "none";
                return Local::Deny(Denial::missing_credential(), None);
            }
            Credential::Invalid(code) => {
                self.credential = "invalid";
                return Local::Deny(Denial::invalid_credential(code), None);
            }
            // Opaque keys can only be introspected by the sidecar.
            Credential::ApiKey(key) => {
                self.credential = "api_key";
                if !shared.borrow().settings.api_key_format.accepts(key) {
                    return Local::Deny(Denial::malformed_api_key(), None);
                }
                return Local::AskSidecar;
            }
            Credential::Bearer(token) => token,
        };
        self.credential = "bearer";
        let now = self.now();
        let mut w = shared.borrow_mut();
        let verified = match w.auth.authenticate(token, now) {
            LocalVerdict::Valid { verified, cache_hit } => {
                if cache_hit {
                    metrics.cache_hits.inc()
                } else {
                    metrics.cache_misses.inc()
                }
                verified
            }
            LocalVerdict::Invalid(e) => {
                metrics.cache_misses.inc();
                return Local::Deny(Denial::from_token_error(&e), None);
            }
            LocalVerdict::Unknown => {
                metrics.cache_misses.inc();
                self.unknown_key_token = Some(token.to_string());
                return Local::AskSidecar;
            }
        };
        let settings = Rc::clone(&w.settings);
        if !w.revocations_fresh {
            return match settings.on_stale {
                OnStale::Sidecar => {
                    metrics.stale_callouts.inc();
                    Local::AskSidecar
                }
                OnStale::Deny => {
                    Local::Deny(Denial::unavailable(codes::REVOCATIONS_STALE, "revocation state is unavailable"), None)
                }
            };
        }
        if w.revocations.is_revoked(&verified.identity) {
            metrics.revoked.inc();
            return Local::Deny(Denial::unauthorized(codes::TOKEN_REVOKED, "the token was revoked"), Some(verified));
        }
        let path = routes::path_only(path);
        let Some(route) = route else {
            let id = &verified.identity;
            return match settings.scope.check(id.issuer.as_deref(), &id.audiences) {
                Err(e) => Local::Deny(Denial::from_token_error(&e), Some(verified)),
                Ok(()) => match check_endpoint_permissions(id, path) {
                    Ok(()) => Local::Allow(Some(verified)),
                    Err(d) => Local::Deny(d, Some(verified)),
                },
            };
        };
        let action = if route.action.is_some() {
            match header(headers, X_ACTION_TOKEN).map(|t| w.auth.authenticate(t, now)) {
                Some(LocalVerdict::Unknown) => return Local::AskSidecar,
                other => other,
            }
        } else {
            None
        };
        let action_ref = match &action {
            Some(LocalVerdict::Valid { verified, .. }) => Some(Ok(&verified.identity)),
            Some(LocalVerdict::Invalid(e)) => Some(Err(e)),
            _ => None,
        };
        if let Err(d) = route.check(&settings.scope, &verified.identity, action_ref, path, now) {
            return Local::Deny(d, Some(verified));
        }
        if let Some(LocalVerdict::Valid { verified: a, .. }) = &action {
            if w.revocations.is_revoked(&a.identity) {
                let d = Denial::unauthorized(codes::ACTION_TOKEN_REVOKED, "the action token was revoked");
                return Local::Deny(d, Some(verified));
            }
            // Single use (its `jti` spent in Redis) is shared state: the sidecar decides.
            return Local::AskSidecar;
        }
        // A live session can only be confirmed by the auth service, Rego rules are evaluated
        // by the sidecar, and quota is shared state: all go there.
        if route.require_session || route.rego.is_some() || route.quota.is_some() {
            Local::AskSidecar
        } else {
            Local::Allow(Some(verified))
        }
    }
}

/// The `error` code of a JSON denial body (only read on the rare unknown-key path).
pub(super) fn denial_code(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    v.get("error")?.as_str().map(str::to_string)
}

/// The first value of header `name` as text.
pub(super) fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v).ok())
}
