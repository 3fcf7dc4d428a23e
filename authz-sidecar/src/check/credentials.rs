//! The needs of the pipeline that concern credentials held in shared state: an opaque API key
//! (the per-client failure limit, introspection within its budget) and the spending of an
//! action token (single use by `jti`).

use authz_core::Denial;
use authz_core::Identity;
use authz_core::cache::digest;
use authz_core::denial::codes;
use authz_core::pipeline::{Answer, verified};
use serde_json::Value;
use tracing::warn;

use super::Decider;
use crate::credentials::identity_cache::remaining;

impl Decider {
    /// The identity of an API key whose shape and revocation the pipeline checked.
    pub(super) async fn api_key(&self, key: &str, client: &str) -> Answer {
        // A client past its failures is not looked up for keys we do not know already.
        if !self.introspector.is_cached(key) && self.failures.exhausted(client).await {
            return Answer::Denied(Denial::too_many_failures(), Value::Null);
        }
        match self.introspector.lookup(key).await {
            Ok(Some(id)) => Answer::ApiKey(verified(id, key, &self.providers.default_provider().claim_headers)),
            Ok(None) => {
                self.failures.failed(client).await;
                Answer::Denied(Denial::unauthorized(codes::API_KEY_INVALID, "the API key was refused"), Value::Null)
            }
            Err(e) if e.overloaded => Answer::Denied(Denial::overloaded(), Value::Null),
            Err(e) => {
                warn!(error = %e, "API-key introspection unavailable");
                Answer::Unavailable("auth service unavailable")
            }
        }
    }

    /// Spends a verified, unrevoked action token: with `actionTokens.singleUse`, not used
    /// before (its `jti`, held until the token expires).
    pub(super) async fn spend_action_token(&self, action: &Identity, now: u64) -> Answer {
        let Some(kv) = &self.action_jtis else { return Answer::Spent };
        let refused = |code, message| Answer::Denied(Denial::unauthorized(code, message), Value::Null);
        let Some(jti) = action.token_id.as_deref() else {
            return refused(codes::ACTION_TOKEN_INVALID, "the action token was refused");
        };
        let scoped = format!("{}\n{jti}", action.issuer.as_deref().unwrap_or(""));
        let key = kv.key("action-jti", &digest(&scoped));
        match kv.claim_once(&key, remaining(action.expires_at, now)).await {
            Ok(true) => Answer::Spent,
            Ok(false) => refused(codes::ACTION_TOKEN_USED, "the action token was already used"),
            Err(()) => Answer::Unavailable("action token store unavailable"),
        }
    }
}
