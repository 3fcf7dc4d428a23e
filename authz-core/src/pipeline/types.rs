//! The pipeline's vocabulary: the route table it reads, the request, what it asks of its host
//! ([`Need`]) and gets back ([`Answer`]), and what it decides ([`Outcome`]).

use std::sync::Arc;

use serde_json::Value;

use crate::authenticator::Verified;
use crate::denial::Denial;
use crate::headers::{AUTHORIZATION, X_ACTION_TOKEN, X_API_KEY};
use crate::routes::{QuotaSpec, RouteTable};
use crate::token::TokenError;

/// The credential headers an allowed request loses before its upstream: the bearer token
/// unless forwarding is on, an API key always, an action token always (it was spent here).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Consumed {
    pub authorization: bool,
    pub api_key: bool,
    pub action_token: bool,
    /// The token came from this entry of the token sources (a cookie or a header), which the
    /// host removes (a cookie from the `Cookie` header, see `credential::without_cookie`).
    pub token_source: Option<usize>,
}

impl Consumed {
    /// The header names to remove.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        [(self.authorization, AUTHORIZATION), (self.api_key, X_API_KEY), (self.action_token, X_ACTION_TOKEN)]
            .into_iter()
            .filter_map(|(on, name)| on.then_some(name))
    }
}

/// Which route table decides.
#[derive(Clone, Copy)]
pub enum Table<'a> {
    /// The policy.
    Policy(&'a RouteTable),
    /// No policy yet (a filter before its first push): the always-public paths pass, anything
    /// else is [`Need::Policy`].
    Bootstrap(&'a RouteTable),
}

/// The request, as the pipeline reads it: its sanitised headers.
pub struct Request<'a, V> {
    pub method: &'a str,
    /// With its query.
    pub path: &'a str,
    pub headers: &'a [(String, V)],
}

/// Something only the host can find out (I/O, shared state), asked for one at a time.
#[derive(Debug)]
pub enum Need<'a> {
    /// The route table (no policy yet).
    Policy,
    /// A token no key held here fits (the request's own, or its action token).
    Verify { token: &'a str, action: bool },
    /// The revocation set is not known to be current.
    Revocations,
    /// An opaque API key, to be introspected (its shape and revocation already checked).
    ApiKey(&'a str),
    /// The route needs a live session for this token.
    Session(&'a str),
    /// A verified, unrevoked action token to be spent (single use).
    SpendActionToken(Arc<Verified>),
    /// A Rego rule on the authenticated request.
    Rego(&'a str),
    /// A quota lease for a compute request.
    Quota(QuotaSpec),
}

/// The host's answer to a [`Need`].
#[derive(Debug)]
pub enum Answer {
    /// To [`Need::Verify`]: the token's verification.
    Verified(Result<Arc<Verified>, TokenError>),
    /// To [`Need::ApiKey`]: the key's identity.
    ApiKey(Arc<Verified>),
    /// To [`Need::Session`]: whether the session is alive.
    Session(bool),
    /// To [`Need::SpendActionToken`]: spent.
    Spent,
    /// To [`Need::Rego`]: the rule's result (`Err` when it could not be evaluated).
    Rego(Result<bool, ()>),
    /// To [`Need::Quota`]: the lease granted.
    Leased(String),
    /// To any need: refused, with more to say in the body (or `Null`).
    Denied(Denial, Value),
    /// To any need: it cannot be satisfied right now; the host answers 503 / `UNAVAILABLE`.
    Unavailable(&'static str),
}

/// The pipeline's result.
#[derive(Debug)]
pub enum Outcome {
    /// Allowed: `caller` is `None` on public paths; `lease` on compute routes; `consumed`, the
    /// credential headers to remove before the upstream.
    Allow { caller: Option<Arc<Verified>>, lease: Option<String>, consumed: Consumed },
    /// Refused; `detail` is merged into the denial's JSON body (or `Null`); `caller` when the
    /// credential was verified before the refusal (the audit record names it).
    Deny { denial: Denial, detail: Value, caller: Option<Arc<Verified>> },
    /// Cannot be decided right now.
    Unavailable(&'static str),
}

impl Outcome {
    pub(super) fn deny(denial: Denial, caller: Option<&Arc<Verified>>) -> Self {
        Outcome::Deny { denial, detail: Value::Null, caller: caller.cloned() }
    }

    pub fn caller(&self) -> Option<&Arc<Verified>> {
        match self {
            Outcome::Allow { caller, .. } | Outcome::Deny { caller, .. } => caller.as_ref(),
            Outcome::Unavailable(_) => None,
        }
    }

    /// The audit record's `decision` and `reason`.
    pub fn decision(&self) -> (&'static str, &'static str) {
        match self {
            Outcome::Allow { caller: Some(_), .. } => ("allow", "ok"),
            Outcome::Allow { caller: None, .. } => ("allow", "public"),
            Outcome::Deny { denial, .. } => ("deny", denial.code),
            Outcome::Unavailable(_) => ("unavailable", ""),
        }
    }
}

/// `eval`'s answer.
#[derive(Debug)]
pub enum Step<'a> {
    Done(Outcome),
    Need(Need<'a>),
}

/// The credential's kind, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// Not looked at (the request was decided before: public path, path guard, no rule).
    Unread,
    None,
    Invalid,
    Bearer,
    ApiKey,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Unread => "",
            CredentialKind::None => "none",
            CredentialKind::Invalid => "invalid",
            CredentialKind::Bearer => "bearer",
            CredentialKind::ApiKey => "api_key",
        }
    }
}
