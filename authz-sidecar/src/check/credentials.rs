//! The credential checks of `Check` that need shared state: opaque API keys (shape, revocation,
//! the per-client failure limit, introspection within its budget) and the spending of an
//! action token (revocation, single use by `jti`).

use authz_core::authorize::check_endpoint_permissions;
use authz_core::cache::digest;
use authz_core::denial::codes;
use authz_core::routes::Route;
use authz_core::{Denial, Identity};
use tracing::warn;

use super::{Decider, Decision};
use crate::identity_cache::remaining;

impl Decider {
    pub(super) async fn api_key(&self, route: Option<&Route>, path: &str, key: &str, client: &str) -> Decision {
        if !self.api_key_format.accepts(key) {
            self.failures.failed(client).await;
            return Decision::Deny(Denial::malformed_api_key());
        }
        if self.revocations.current().set.is_api_key_revoked(&digest(key)) {
            return Decision::Deny(Denial::unauthorized(codes::API_KEY_REVOKED, "the API key was revoked"));
        }
        // A client past its failures is not looked up for keys we do not know already.
        if !self.introspector.is_cached(key) && self.failures.exhausted(client).await {
            return Decision::Deny(Denial::too_many_failures());
        }
        match self.introspector.lookup(key).await {
            // Keys carry no session, sign-in time or action: step-up routes need a user token.
            Ok(Some(id)) if route.is_some_and(|r| r.require_session || r.action.is_some() || r.has_max_auth_age()) => {
                let d = Denial::unauthorized(codes::API_KEY_NOT_ALLOWED, "this route needs a user token");
                Decision::DenyWith(d, serde_json::Value::Null, Some(id))
            }
            Ok(Some(id)) => {
                let verdict = match route {
                    Some(r) => r.authorize(&id, path),
                    None => check_endpoint_permissions(&id, path),
                };
                match verdict {
                    Ok(()) => Decision::Allow(Some(id)),
                    // The caller is known: the refusal names it in the audit record.
                    Err(d) => Decision::DenyWith(d, serde_json::Value::Null, Some(id)),
                }
            }
            Ok(None) => {
                self.failures.failed(client).await;
                Decision::Deny(Denial::unauthorized(codes::API_KEY_INVALID, "the API key was refused"))
            }
            Err(e) if e.overloaded => Decision::Deny(Denial::overloaded()),
            Err(e) => {
                warn!(error = %e, "API-key introspection unavailable");
                Decision::Unavailable("auth service unavailable")
            }
        }
    }

    /// The checks on an action token that need shared state, once everything else about the
    /// request passed: not revoked (its session logged out, "log out everywhere"), and, with
    /// `actionTokens.singleUse`, not used before (its `jti`, held until the token expires).
    pub(super) async fn spend_action_token(&self, action: &Identity, now: u64) -> Result<(), Decision> {
        if self.revocations.current().set.is_revoked(action) {
            return Err(Decision::Deny(Denial::unauthorized(
                codes::ACTION_TOKEN_REVOKED,
                "the action token was revoked",
            )));
        }
        let Some(kv) = &self.action_jtis else { return Ok(()) };
        let Some(jti) = action.token_id.as_deref() else {
            return Err(Decision::Deny(Denial::unauthorized(
                codes::ACTION_TOKEN_INVALID,
                "the action token was refused",
            )));
        };
        let scoped = format!("{}\n{jti}", action.issuer.as_deref().unwrap_or(""));
        let key = kv.key("action-jti", &digest(&scoped));
        match kv.claim_once(&key, remaining(action.expires_at, now)).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                Err(Decision::Deny(Denial::unauthorized(codes::ACTION_TOKEN_USED, "the action token was already used")))
            }
            Err(()) => Err(Decision::Unavailable("action token store unavailable")),
        }
    }
}
