//! The registered and platform claims we read from a token, and the checks on them.
//!
//! Signature checks live in [`crate::token`]; this module only judges the payload, with the
//! clock passed in so that the filter (Envoy's clock) and the sidecar (system clock) agree.

use serde::Deserialize;

use crate::token::TokenError;

/// `aud` may be a single string or an array of strings (RFC 7519 §4.1.3).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Audience {
    /// The audiences as a list.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Audience::None => Vec::new(),
            Audience::One(a) => vec![a],
            Audience::Many(list) => list,
        }
    }

    pub fn as_slice(&self) -> &[String] {
        match self {
            Audience::None => &[],
            Audience::One(a) => std::slice::from_ref(a),
            Audience::Many(list) => list,
        }
    }
}

/// Which issuers and audiences a request accepts: the global defaults, or a route's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Accepted issuers; empty accepts any issuer.
    pub issuers: Vec<String>,
    /// Accepted audiences (any one suffices); empty skips the audience check.
    pub audiences: Vec<String>,
}

impl Scope {
    /// Checks a token's `iss` and `aud` (`aud` as a list).
    pub fn check(&self, iss: Option<&str>, aud: &[String]) -> Result<(), TokenError> {
        if !self.issuers.is_empty() {
            let iss = iss.ok_or(TokenError::MissingClaim("iss"))?;
            if !self.issuers.iter().any(|i| i == iss) {
                return Err(TokenError::WrongIssuer);
            }
        }
        if !self.audiences.is_empty() && !aud.iter().any(|a| self.audiences.contains(a)) {
            return Err(TokenError::WrongAudience);
        }
        Ok(())
    }
}

/// The claims of a verified access token that the gateway uses.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub iss: Option<String>,
    #[serde(default)]
    pub aud: Audience,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub nbf: Option<u64>,
    #[serde(default)]
    pub iat: Option<u64>,
    #[serde(default)]
    pub jti: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    /// Session id, for session checks and revocation.
    #[serde(default)]
    pub sid: Option<String>,
    /// When the user last authenticated (OIDC `auth_time`), for step-up rules.
    #[serde(default)]
    pub auth_time: Option<u64>,
    /// The calling service's name: present only in service-to-service tokens.
    #[serde(default)]
    pub svc: Option<String>,
    /// The action an action token (`X-Action-Token`) authorises.
    #[serde(default)]
    pub action: Option<String>,
    /// OAuth scopes as one space-separated string (`scope`) or a list (`scp`).
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub scp: Vec<String>,
    /// Path patterns this token may call (API-key style tokens); absent = no restriction.
    #[serde(default)]
    pub endpoint_permissions: Option<Vec<String>>,
    /// Every other claim, for claim conditions and path bindings in route rules.
    #[serde(flatten)]
    pub extra: std::collections::BTreeMap<String, serde_json::Value>,
    /// The `kid` of the key that verified the signature: set by the verifier, never read
    /// from the payload.
    #[serde(skip)]
    pub verified_kid: Option<String>,
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsPolicy {
    /// Accepted issuers; empty accepts any issuer.
    pub issuers: Vec<String>,
    /// Accepted audiences (any one suffices); empty skips the audience check.
    pub audiences: Vec<String>,
    /// Tolerated clock difference, in seconds, for `exp`, `nbf` and `iat`.
    pub clock_skew_secs: u64,
    /// A token without `exp` is refused (RFC 7519 makes it optional; access tokens carry it).
    pub require_exp: bool,
}

impl Default for ClaimsPolicy {
    fn default() -> Self {
        Self { issuers: Vec::new(), audiences: Vec::new(), clock_skew_secs: 60, require_exp: true }
    }
}

impl ClaimsPolicy {
    /// The default scope (issuers and audiences) of this policy.
    pub fn scope(&self) -> Scope {
        Scope { issuers: self.issuers.clone(), audiences: self.audiences.clone() }
    }

    /// Checks every claim at time `now` (Unix seconds): time, subject, issuer and audience.
    pub fn check(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        self.check_time(claims, now)?;
        self.scope().check(claims.iss.as_deref(), claims.aud.as_slice())
    }

    /// Checks what does not depend on the route: `exp`, `nbf`, `iat` and `sub`.
    pub fn check_time(&self, claims: &Claims, now: u64) -> Result<(), TokenError> {
        let skew = self.clock_skew_secs;
        match claims.exp {
            Some(exp) if exp.saturating_add(skew) <= now => return Err(TokenError::Expired),
            Some(_) => {}
            None if self.require_exp => return Err(TokenError::MissingClaim("exp")),
            None => {}
        }
        if claims.nbf.is_some_and(|nbf| nbf > now.saturating_add(skew)) {
            return Err(TokenError::NotYetValid);
        }
        if claims.iat.is_some_and(|iat| iat > now.saturating_add(skew)) {
            return Err(TokenError::IssuedInFuture);
        }
        match claims.sub.as_deref() {
            Some(s) if !s.is_empty() => {}
            _ => return Err(TokenError::MissingClaim("sub")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn base() -> Claims {
        Claims {
            sub: Some("u1".into()),
            iss: Some("https://auth.test".into()),
            aud: Audience::One("gateway".into()),
            exp: Some(NOW + 300),
            iat: Some(NOW - 10),
            ..Claims::default()
        }
    }

    fn policy() -> ClaimsPolicy {
        ClaimsPolicy {
            issuers: vec!["https://auth.test".into()],
            audiences: vec!["gateway".into()],
            clock_skew_secs: 60,
            require_exp: true,
        }
    }

    #[test]
    fn verdicts() {
        type Edit = fn(&mut Claims);
        let cases: Vec<(&str, Edit, Result<(), TokenError>)> = vec![
            ("valid", |_| {}, Ok(())),
            ("expired beyond skew", |c| c.exp = Some(NOW - 61), Err(TokenError::Expired)),
            ("expired within skew", |c| c.exp = Some(NOW - 30), Ok(())),
            ("exactly at skew edge", |c| c.exp = Some(NOW - 60), Err(TokenError::Expired)),
            ("missing exp", |c| c.exp = None, Err(TokenError::MissingClaim("exp"))),
            ("nbf in future", |c| c.nbf = Some(NOW + 120), Err(TokenError::NotYetValid)),
            ("nbf within skew", |c| c.nbf = Some(NOW + 30), Ok(())),
            ("iat in future", |c| c.iat = Some(NOW + 120), Err(TokenError::IssuedInFuture)),
            ("missing sub", |c| c.sub = None, Err(TokenError::MissingClaim("sub"))),
            ("empty sub", |c| c.sub = Some(String::new()), Err(TokenError::MissingClaim("sub"))),
            ("wrong issuer", |c| c.iss = Some("https://evil".into()), Err(TokenError::WrongIssuer)),
            ("missing issuer", |c| c.iss = None, Err(TokenError::MissingClaim("iss"))),
            ("wrong audience", |c| c.aud = Audience::One("billing".into()), Err(TokenError::WrongAudience)),
            ("missing audience", |c| c.aud = Audience::None, Err(TokenError::WrongAudience)),
            ("audience array with match", |c| c.aud = Audience::Many(vec!["x".into(), "gateway".into()]), Ok(())),
            (
                "audience array without match",
                |c| c.aud = Audience::Many(vec!["x".into(), "y".into()]),
                Err(TokenError::WrongAudience),
            ),
        ];
        for (name, edit, want) in cases {
            let mut c = base();
            edit(&mut c);
            assert_eq!(policy().check(&c, NOW), want, "case {name}");
        }
        let optional = ClaimsPolicy { require_exp: false, ..policy() };
        let mut c = base();
        c.exp = None;
        assert_eq!(optional.check(&c, NOW), Ok(()), "exp optional: absent passes");
        c.exp = Some(NOW - 61);
        assert_eq!(optional.check(&c, NOW), Err(TokenError::Expired), "exp optional: present is still checked");
    }

    #[test]
    fn empty_policy_skips_issuer_and_audience() {
        let mut c = base();
        c.iss = None;
        c.aud = Audience::None;
        assert_eq!(ClaimsPolicy::default().check(&c, NOW), Ok(()));
    }

    #[test]
    fn audience_parses_string_or_array() {
        let one: Claims = serde_json::from_str(r#"{"aud":"a"}"#).unwrap();
        assert_eq!(one.aud, Audience::One("a".into()));
        let many: Claims = serde_json::from_str(r#"{"aud":["a","b"]}"#).unwrap();
        assert_eq!(many.aud, Audience::Many(vec!["a".into(), "b".into()]));
    }
}
