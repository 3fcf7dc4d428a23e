//! The decision sequence, written once for every host (sans I/O).
//!
//! A request goes through the same steps wherever it is decided: the path guard, the route
//! rule, the credential, verification, revocation, the route's requirements, the action token,
//! and what needs shared state (a live session, a spent action token, a Rego rule, a quota
//! lease). [`Pipeline::eval`] runs the steps it can with what its [`Facts`] hold and returns
//! either an [`Outcome`] or the one [`Need`] it cannot satisfy; the host satisfies it and
//! hands the [`Answer`] to [`Pipeline::digest`], then calls `eval` again, which goes on from
//! there (the steps already passed are cheap and pure, so `eval` simply runs them again with
//! the answers it has).
//!
//! The filter turns any need into a callout to the sidecar (which decides the whole request
//! with this same pipeline); the sidecar satisfies each need itself (key refresh, API-key
//! introspection, the session, Rego, the lease); the `check` CLI satisfies none and says what
//! would be asked. The shape follows Kuadrant wasm-shim's `Pipeline` (`eval` and `digest`).

use std::sync::Arc;

use crate::api_key_format::ApiKeyFormat;
use crate::authenticator::{LocalVerdict, Verified};
use crate::authorize::check_endpoint_permissions;
use crate::cache::digest;
use crate::credential::{self, Credential, TokenSource};
use crate::denial::{Denial, codes};
use crate::headers::{AUTHORIZATION, X_ACTION_TOKEN};
use crate::identity::Identity;
use crate::path_guard;
use crate::provider::Providers;
use crate::revocation::RevocationSet;
use crate::routes::{self, Matched, Route};
use crate::token::TokenError;

#[cfg(test)]
mod tests;
mod types;

pub use types::{Answer, Consumed, CredentialKind, Need, Outcome, Request, Step, Table};

/// What the pipeline reads from its host without I/O.
pub trait Facts {
    fn now(&self) -> u64;
    /// Verifies a bearer token with what the host holds (its cache, its keys);
    /// [`LocalVerdict::Unknown`] when it cannot say (no key here fits, or the host verifies
    /// only through [`Need::Verify`]).
    fn authenticate(&mut self, token: &str) -> LocalVerdict;
    /// The revocation set, when it is known to be current.
    fn revocations(&self) -> Option<&RevocationSet>;
    /// The identity providers: each one's issuers and audiences (a route may name its own),
    /// token sources and forwarding.
    fn providers(&self) -> &Providers;
    /// The shape an API key must have before anyone is asked about it.
    fn api_key_format(&self) -> &ApiKeyFormat;
}

/// Where the request stands after the route lookup.
enum Matching<'a> {
    Decided(Denial),
    Public,
    /// Public, after its Rego rule allows it (evaluated without an identity).
    PublicRego(&'a Route),
    NeedPolicy,
    Protected(Option<&'a Route>),
}

/// One request's decision.
pub struct Pipeline<'a, V> {
    req: Request<'a, V>,
    matching: Matching<'a>,
    credential: Credential<'a>,
    /// Which of the token sources the bearer token came from (`None`: `Authorization`).
    token_source: Option<(usize, TokenSource)>,
    /// Answers so far.
    caller: Option<Arc<Verified>>,
    action: Option<Result<Arc<Verified>, TokenError>>,
    session_alive: bool,
    spent: bool,
    rego_passed: bool,
    lease: Option<String>,
    /// A terminal answer (a denial or an outage) waiting to be returned by `eval`.
    finished: Option<Outcome>,
}

impl<'a, V: AsRef<[u8]>> Pipeline<'a, V> {
    /// Looks the request up (path guard, then the route table); nothing else yet.
    pub fn new(table: Table<'a>, req: Request<'a, V>) -> Self {
        Self::with_sources(table, req, &[])
    }

    /// [`Pipeline::new`], also reading bearer tokens from `sources` (cookies, other headers).
    pub fn with_sources(table: Table<'a>, req: Request<'a, V>, sources: &[TokenSource]) -> Self {
        let matching = Self::match_route(table, req.method, req.path);
        let (credential, token_source) = match matching {
            Matching::Protected(_) => credential::extract_from(req.headers, sources),
            _ => (Credential::None, None),
        };
        let token_source = token_source.and_then(|i| Some((i, sources.get(i)?.clone())));
        Self {
            req,
            matching,
            credential,
            token_source,
            caller: None,
            action: None,
            session_alive: false,
            spent: false,
            rego_passed: false,
            lease: None,
            finished: None,
        }
    }

    fn match_route(table: Table<'a>, method: &str, path: &str) -> Matching<'a> {
        // Before any rule: a path an upstream could read differently from the policy.
        if let Err(d) = path_guard::check(path) {
            return Matching::Decided(d);
        }
        let t = match table {
            Table::Policy(t) => t,
            Table::Bootstrap(t) => {
                if path_guard::has_method_param(path) {
                    return Matching::Decided(path_guard::METHOD_OVERRIDE);
                }
                return match t.find(method, path) {
                    Matched::Public => Matching::Public,
                    _ => Matching::NeedPolicy,
                };
            }
        };
        if path_guard::has_method_param(path) && t.depends_on_method(path) {
            return Matching::Decided(path_guard::METHOD_OVERRIDE);
        }
        match t.find(method, path) {
            Matched::Public => Matching::Public,
            Matched::PublicRego(r) => Matching::PublicRego(r),
            Matched::NoRule => {
                Matching::Decided(Denial::forbidden(codes::NO_MATCHING_RULE, "no policy rule allows this request"))
            }
            Matched::Protected(r) => Matching::Protected(r),
        }
    }

    /// The rule that matched, if a named one did.
    pub fn route(&self) -> Option<&'a Route> {
        match self.matching {
            Matching::Protected(r) => r,
            Matching::PublicRego(r) => Some(r),
            _ => None,
        }
    }

    /// The request's credential kind.
    pub fn credential(&self) -> CredentialKind {
        match (&self.matching, self.credential) {
            (Matching::Protected(_), Credential::None) => CredentialKind::None,
            (Matching::Protected(_), Credential::Invalid(_)) => CredentialKind::Invalid,
            (Matching::Protected(_), Credential::Bearer(_)) => CredentialKind::Bearer,
            (Matching::Protected(_), Credential::ApiKey(_)) => CredentialKind::ApiKey,
            _ => CredentialKind::Unread,
        }
    }

    /// The presented credential (bearer token or API key), for its fingerprint.
    pub fn credential_text(&self) -> Option<&'a str> {
        match self.credential {
            Credential::Bearer(t) | Credential::ApiKey(t) => Some(t),
            Credential::None | Credential::Invalid(_) => None,
        }
    }

    /// The caller, once verified.
    pub fn caller(&self) -> Option<&Arc<Verified>> {
        self.caller.as_ref()
    }

    pub fn request(&self) -> &Request<'a, V> {
        &self.req
    }

    /// Takes the host's answer to the need `eval` returned last.
    pub fn digest(&mut self, answer: Answer) {
        match answer {
            Answer::Verified(result) => {
                if self.caller.is_none() {
                    match result {
                        Ok(v) => self.caller = Some(v),
                        Err(e) => self.finished = Some(Outcome::deny(Denial::from_token_error(&e), None)),
                    }
                } else {
                    self.action = Some(result);
                }
            }
            Answer::ApiKey(v) => self.caller = Some(v),
            Answer::Session(true) => self.session_alive = true,
            Answer::Session(false) => {
                let d = Denial::unauthorized(codes::SESSION_INVALID, "the session has ended");
                self.finished = Some(Outcome::deny(d, self.caller.as_ref()));
            }
            Answer::Spent => self.spent = true,
            Answer::Rego(Ok(true)) => self.rego_passed = true,
            Answer::Rego(Ok(false)) => {
                let d = Denial::forbidden(codes::POLICY_DENIED, "the policy denies this request");
                self.finished = Some(Outcome::deny(d, self.caller.as_ref()));
            }
            Answer::Rego(Err(())) => {
                let d = Denial::forbidden(codes::POLICY_ERROR, "the policy could not be evaluated");
                self.finished = Some(Outcome::deny(d, self.caller.as_ref()));
            }
            Answer::Leased(lease) => self.lease = Some(lease),
            Answer::Denied(denial, detail) => {
                self.finished = Some(Outcome::Deny { denial, detail, caller: self.caller.clone() });
            }
            Answer::Unavailable(reason) => self.finished = Some(Outcome::Unavailable(reason)),
        }
    }

    /// Runs the sequence as far as `facts` and the answers so far allow.
    pub fn eval(&mut self, facts: &mut impl Facts) -> Step<'a> {
        if let Some(done) = self.finished.take() {
            return Step::Done(done);
        }
        let route = match &self.matching {
            Matching::Decided(d) => return Step::Done(Outcome::deny(d.clone(), None)),
            Matching::Public => {
                return Step::Done(Outcome::Allow { caller: None, lease: None, consumed: Consumed::default() });
            }
            Matching::PublicRego(r) => {
                return match r.rego.as_deref() {
                    Some(rule) if !self.rego_passed => Step::Need(Need::Rego(rule)),
                    _ => Step::Done(Outcome::Allow { caller: None, lease: None, consumed: Consumed::default() }),
                };
            }
            Matching::NeedPolicy => return Step::Need(Need::Policy),
            Matching::Protected(r) => *r,
        };
        let path = routes::path_only(self.req.path);
        let caller = match self.credential {
            Credential::None => return Step::Done(Outcome::deny(Denial::missing_credential(), None)),
            Credential::Invalid(code) => return Step::Done(Outcome::deny(Denial::invalid_credential(code), None)),
            Credential::ApiKey(key) => match self.api_key(facts, route, path, key) {
                Ok(caller) => caller,
                Err(step) => return step,
            },
            Credential::Bearer(token) => match self.bearer(facts, route, path, token) {
                Ok(caller) => caller,
                Err(step) => return step,
            },
        };
        // What every credential goes through last, once everything else allowed it.
        if let Some(rule) = route.and_then(|r| r.rego.as_deref())
            && !self.rego_passed
        {
            return Step::Need(Need::Rego(rule));
        }
        if let Some(spec) = route.and_then(|r| r.quota)
            && self.lease.is_none()
        {
            return Step::Need(Need::Quota(spec));
        }
        let forward = facts.providers().get(caller.identity.provider.as_deref()).is_some_and(|p| p.forward_credential);
        let consumed = self.consumed(route, forward);
        Step::Done(Outcome::Allow { caller: Some(caller), lease: self.lease.clone(), consumed })
    }

    /// What the upstream must not see of the credentials this request was allowed with.
    fn consumed(&self, route: Option<&Route>, forward: bool) -> Consumed {
        let has = |name: &str| self.req.headers.iter().any(|(k, _)| k == name);
        match self.credential {
            Credential::Bearer(_) => {
                let remove = !(forward || route.is_some_and(|r| r.forward_credential));
                Consumed {
                    authorization: remove && self.token_source.is_none(),
                    api_key: false,
                    action_token: has(X_ACTION_TOKEN),
                    token_source: self.token_source.as_ref().map(|(i, _)| *i).filter(|_| remove),
                }
            }
            // From `x-api-key` or `Authorization: ApiKey ...`: neither goes on.
            Credential::ApiKey(_) => Consumed {
                authorization: has(AUTHORIZATION),
                api_key: true,
                action_token: has(X_ACTION_TOKEN),
                token_source: None,
            },
            Credential::None | Credential::Invalid(_) => Consumed::default(),
        }
    }

    /// An opaque API key: its shape and revocation here, its identity from the host, then the
    /// route's requirements (keys carry no session, sign-in time or action).
    fn api_key(
        &self,
        facts: &mut impl Facts,
        route: Option<&Route>,
        path: &str,
        key: &'a str,
    ) -> Result<Arc<Verified>, Step<'a>> {
        if !facts.api_key_format().accepts(key) {
            return Err(Step::Done(Outcome::deny(Denial::malformed_api_key(), None)));
        }
        let Some(revocations) = facts.revocations() else { return Err(Step::Need(Need::Revocations)) };
        if revocations.is_api_key_revoked(&digest(key)) {
            let d = Denial::unauthorized(codes::API_KEY_REVOKED, "the API key was revoked");
            return Err(Step::Done(Outcome::deny(d, None)));
        }
        let Some(caller) = &self.caller else { return Err(Step::Need(Need::ApiKey(key))) };
        let verdict = match route {
            Some(r) if !r.accepts_provider(crate::provider::DEFAULT) => Err(provider_not_accepted()),
            Some(r) if r.require_session || r.action.is_some() || r.has_max_auth_age() => {
                Err(Denial::unauthorized(codes::API_KEY_NOT_ALLOWED, "this route needs a user token"))
            }
            Some(r) => r.authorize(&caller.identity, path),
            None => check_endpoint_permissions(&caller.identity, path),
        };
        match verdict {
            Ok(()) => Ok(Arc::clone(caller)),
            Err(d) => refuse(d, caller),
        }
    }

    /// A bearer token: verification, revocation, issuer and audience, the route's
    /// requirements, a live session, the action token.
    fn bearer(
        &mut self,
        facts: &mut impl Facts,
        route: Option<&Route>,
        path: &str,
        token: &'a str,
    ) -> Result<Arc<Verified>, Step<'a>> {
        let caller = match &self.caller {
            Some(c) => Arc::clone(c),
            None => match facts.authenticate(token) {
                LocalVerdict::Valid { verified, .. } => {
                    self.caller = Some(Arc::clone(&verified));
                    verified
                }
                LocalVerdict::Invalid(e) => return Err(Step::Done(Outcome::deny(Denial::from_token_error(&e), None))),
                LocalVerdict::Unknown => return Err(Step::Need(Need::Verify { token, action: false })),
            },
        };
        let Some(revocations) = facts.revocations() else { return Err(Step::Need(Need::Revocations)) };
        if revocations.is_revoked(&caller.identity) {
            return refuse(Denial::unauthorized(codes::TOKEN_REVOKED, "the token was revoked"), &caller);
        }
        // The provider that verified it: a token is read only where its provider reads tokens,
        // and accepted only on the routes that name its provider.
        let Some(provider) = facts.providers().get(caller.identity.provider.as_deref()) else {
            return refuse(provider_not_accepted(), &caller);
        };
        if !provider.reads(self.token_source.as_ref().map(|(_, s)| s)) {
            let d = Denial::unauthorized(
                codes::TOKEN_WRONG_SOURCE,
                "the token was sent where its issuer's tokens are not read",
            );
            return refuse(d, &caller);
        }
        let Some(route) = route else {
            let id = &caller.identity;
            let verdict = if provider.issuer.is_none() { Ok(()) } else { Err(provider_not_accepted()) }
                .and_then(|()| {
                    provider.scope.check(id.issuer.as_deref(), &id.audiences).map_err(|e| Denial::from_token_error(&e))
                })
                .and_then(|()| check_endpoint_permissions(id, path));
            return match verdict {
                Ok(()) => Ok(caller),
                Err(d) => refuse(d, &caller),
            };
        };
        if !route.accepts_provider(&provider.name) {
            return refuse(provider_not_accepted(), &caller);
        }
        let headers = self.req.headers;
        if route.action.is_some()
            && self.action.is_none()
            && let Some(action_token) = header(headers, X_ACTION_TOKEN)
        {
            self.action = match facts.authenticate(action_token) {
                LocalVerdict::Valid { verified, .. } => Some(Ok(verified)),
                LocalVerdict::Invalid(e) => Some(Err(e)),
                LocalVerdict::Unknown => return Err(Step::Need(Need::Verify { token: action_token, action: true })),
            };
        }
        let action = self.action.as_ref().map(|r| r.as_ref().map(|a| &*a.identity));
        let Some(scope) = facts.providers().get(caller.identity.provider.as_deref()).map(|p| &p.scope) else {
            return refuse(provider_not_accepted(), &caller);
        };
        if let Err(d) = route.check(scope, &caller.identity, action, path, facts.now()) {
            return refuse(d, &caller);
        }
        let action = match &self.action {
            Some(Ok(a)) => Some(a),
            _ => None,
        };
        if let Some(a) = action
            && facts.revocations().is_some_and(|r| r.is_revoked(&a.identity))
        {
            return refuse(Denial::unauthorized(codes::ACTION_TOKEN_REVOKED, "the action token was revoked"), &caller);
        }
        if route.require_session && !self.session_alive {
            return Err(Step::Need(Need::Session(token)));
        }
        if let Some(a) = action
            && !self.spent
        {
            return Err(Step::Need(Need::SpendActionToken(Arc::clone(a))));
        }
        Ok(caller)
    }
}

/// A token of a provider the route does not name (or no longer configured).
fn provider_not_accepted() -> Denial {
    Denial::unauthorized(codes::TOKEN_WRONG_ISSUER, "this route does not accept tokens of this issuer")
}

/// A refusal of a verified caller (the audit record names it).
fn refuse<'a, T>(d: Denial, caller: &Arc<Verified>) -> Result<T, Step<'a>> {
    Err(Step::Done(Outcome::deny(d, Some(caller))))
}

/// The first value of header `name` as text.
fn header<'a, V: AsRef<[u8]>>(headers: &'a [(String, V)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).and_then(|(_, v)| std::str::from_utf8(v.as_ref()).ok())
}

/// The caller's identity, for hosts that hold an [`Identity`] and need a [`Verified`] (with
/// the `claimToHeaders` projections).
pub fn verified(identity: Arc<Identity>, credential: &str, mapped: &[crate::identity::ClaimHeader]) -> Arc<Verified> {
    Arc::new(Verified::mapped(identity, credential, mapped))
}
