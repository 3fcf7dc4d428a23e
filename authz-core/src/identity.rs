//! A verified identity and the headers it projects onto the upstream request.

use std::borrow::Cow;

use crate::claims::Claims;
use crate::headers::is_safe_value;
use crate::token::TokenError;

pub mod claim_headers;
pub mod claim_map;

pub use claim_headers::ClaimHeader;
pub use claim_map::ClaimMap;

/// Who the caller is, as established by a verified credential. Serialisable so the sidecar
/// can share it through Redis.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub user_id: String,
    pub email: Option<String>,
    pub roles: Vec<String>,
    pub issuer: Option<String>,
    pub token_id: Option<String>,
    pub session_id: Option<String>,
    /// The token's audiences, checked per route.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// When the user last authenticated, for `maxAuthAge` routes.
    #[serde(default)]
    pub auth_time: Option<u64>,
    /// Set only for service-to-service tokens (the `svc` claim): the calling service.
    #[serde(default)]
    pub service: Option<String>,
    /// The action an action token authorises (only meaningful for `X-Action-Token`s).
    #[serde(default)]
    pub action: Option<String>,
    /// The `kid` of the key that verified the token (`None` for kid-less HMAC tokens). A cached
    /// identity is only used while its key is still trusted, so retiring a key ends its tokens.
    #[serde(default)]
    pub key_id: Option<String>,
    /// The token's `iat`, for "log out everywhere" (`sub` + `before`).
    #[serde(default)]
    pub issued_at: Option<u64>,
    /// OAuth scopes (`scope` split on spaces, or `scp`).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Path patterns the token may call, when it carries `endpoint_permissions`.
    #[serde(default)]
    pub endpoint_permissions: Option<Vec<String>>,
    /// Claims beyond the registered and platform ones (`labs`, `tier`, ...), for route rules.
    #[serde(default)]
    pub claims: ClaimMap,
    /// Unix seconds after which this identity must not be used (the token's `exp`).
    pub expires_at: u64,
    /// The provider whose keys verified the token (`None`: the default one, and API keys).
    #[serde(default)]
    pub provider: Option<String>,
}

impl Identity {
    /// Builds the identity from verified claims. A `sub` that cannot be carried in a header
    /// verbatim refuses the token: rewriting it could make two users one.
    pub fn from_claims(c: Claims) -> Result<Self, TokenError> {
        let user_id = c.sub.ok_or(TokenError::MissingClaim("sub"))?;
        if !is_safe_value(&user_id, false) {
            return Err(TokenError::BadClaim("sub"));
        }
        if c.svc.as_deref().is_some_and(|s| !is_safe_value(s, false)) {
            return Err(TokenError::BadClaim("svc"));
        }
        Ok(Self {
            user_id,
            email: c.email.filter(|e| is_safe_value(e, false)),
            // A role we cannot represent is not granted.
            roles: c.roles.into_iter().filter(|r| is_safe_value(r, true)).collect(),
            issuer: c.iss,
            token_id: c.jti,
            session_id: c.sid,
            audiences: c.aud.into_vec(),
            auth_time: c.auth_time,
            service: c.svc,
            action: c.action,
            key_id: c.verified_kid,
            issued_at: c.iat,
            scopes: match c.scope {
                Some(s) => s.split_ascii_whitespace().map(str::to_string).collect(),
                None => c.scp,
            },
            endpoint_permissions: c.endpoint_permissions,
            claims: ClaimMap::from(c.extra),
            expires_at: c.exp.unwrap_or(0),
            provider: None,
        })
    }

    /// The caller's lab or tenant: claim `claim` when it is a string, or the first string of
    /// a list (a member of several labs is charged to the first one its token names).
    pub fn tenant(&self, claim: &str) -> Option<&str> {
        match self.claims.get(claim)? {
            serde_json::Value::String(s) => Some(s),
            serde_json::Value::Array(items) => items.first().and_then(serde_json::Value::as_str),
            _ => None,
        }
    }

    /// A claim's value by name, including the ones kept in typed fields; a name starting with
    /// `/` is a JSON pointer (RFC 6901) into the claims (`/kubernetes.io/serviceaccount/name`).
    /// Borrowed from the identity where it can be: route rules read claims on every request.
    pub fn claim(&self, name: &str) -> Option<Cow<'_, serde_json::Value>> {
        let Some(pointer) = name.strip_prefix('/') else { return self.named_claim(name) };
        let top = self.named_claim(&claim_root(name))?;
        // The pointer below the top-level claim, with its leading `/` (empty: the claim itself).
        let below = pointer.find('/').map_or("", |i| &pointer[i..]);
        if below.is_empty() {
            return Some(top);
        }
        match top {
            Cow::Borrowed(v) => v.pointer(below).map(Cow::Borrowed),
            Cow::Owned(v) => v.pointer(below).cloned().map(Cow::Owned),
        }
    }

    fn named_claim(&self, name: &str) -> Option<Cow<'_, serde_json::Value>> {
        use serde_json::Value;
        let typed = match name {
            "sub" => Value::String(self.user_id.clone()),
            "email" => Value::String(self.email.clone()?),
            "roles" => Value::from(self.roles.clone()),
            "iss" => Value::String(self.issuer.clone()?),
            "svc" => Value::String(self.service.clone()?),
            other => return self.claims.get(other).map(Cow::Borrowed),
        };
        Some(Cow::Owned(typed))
    }

    /// Drops the extra claims (`labs`, `tier`, ...) that `keep` (sorted) does not name: a
    /// cache keeps only what its policy reads.
    pub fn keep_claims(&mut self, keep: &[String]) {
        self.claims.retain(|name| keep.binary_search_by(|k| k.as_str().cmp(name)).is_ok());
    }

    /// The value of `X-User-Roles` when it is not one role: the roles joined by commas (one
    /// role is sent as the identity's own string, so only several cost an allocation).
    pub fn joined_roles(&self) -> Option<Box<str>> {
        (self.roles.len() > 1).then(|| self.roles.join(",").into_boxed_str())
    }
}

/// The top-level claim a claim name reads: the name itself, or the first reference token of a
/// JSON pointer (`/kubernetes.io/namespace` reads `kubernetes.io`; RFC 6901 escapes undone).
/// Borrowed unless an escape had to be undone.
pub fn claim_root(name: &str) -> Cow<'_, str> {
    let Some(pointer) = name.strip_prefix('/') else { return Cow::Borrowed(name) };
    let first = pointer.split('/').next().unwrap_or_default();
    if first.contains('~') { Cow::Owned(first.replace("~1", "/").replace("~0", "~")) } else { Cow::Borrowed(first) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authenticator::Verified;

    /// The claim, owned (the assertions compare values).
    fn claim(id: &Identity, name: &str) -> Option<serde_json::Value> {
        id.claim(name).map(Cow::into_owned)
    }

    fn headers(id: Identity) -> Vec<(String, String)> {
        Verified::new(id, "t").headers().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn projects_headers() {
        let c = Claims {
            sub: Some("u-42".into()),
            email: Some("ada@lab.org".into()),
            roles: vec!["admin".into(), "bad,role".into(), "user".into()],
            exp: Some(10),
            ..Claims::default()
        };
        let id = Identity::from_claims(c).unwrap();
        assert_eq!(
            headers(id),
            vec![
                ("x-user-id".to_string(), "u-42".to_string()),
                ("x-user-email".to_string(), "ada@lab.org".to_string()),
                ("x-user-roles".to_string(), "admin,user".to_string()),
            ]
        );
    }

    #[test]
    fn claims_are_found_by_name_or_json_pointer() {
        let c: Claims = serde_json::from_value(serde_json::json!({
            "sub": "system:serviceaccount:tes:runner", "exp": 10,
            "kubernetes.io": {"namespace": "tes", "serviceaccount": {"name": "runner", "uid": "u"}},
            "a/b": {"c~d": 1},
        }))
        .unwrap();
        let id = Identity::from_claims(c).unwrap();
        assert_eq!(claim(&id, "/kubernetes.io/serviceaccount/name"), Some("runner".into()));
        assert_eq!(claim(&id, "/kubernetes.io/namespace"), Some("tes".into()));
        assert_eq!(claim(&id, "/sub"), Some("system:serviceaccount:tes:runner".into()));
        assert_eq!(claim(&id, "/a~1b/c~0d"), Some(1.into()));
        assert_eq!(claim(&id, "/kubernetes.io/nope"), None);
        assert_eq!(claim(&id, "kubernetes.io").and_then(|v| v.get("namespace").cloned()), Some("tes".into()));
        assert_eq!(
            ["/kubernetes.io/namespace", "/a~1b/c~0d", "tier", "/x"].map(claim_root),
            ["kubernetes.io", "a/b", "tier", "x"].map(String::from)
        );
        let mut kept = id.clone();
        kept.keep_claims(&["kubernetes.io".to_string()]);
        assert_eq!(claim(&kept, "/kubernetes.io/namespace"), Some("tes".into()));
        assert_eq!((claim(&kept, "/a~1b/c~0d"), kept.claims.len()), (None, 1));
    }

    #[test]
    fn service_tokens_project_internal_service() {
        let c = Claims { sub: Some("svc-tes".into()), svc: Some("tes".into()), exp: Some(10), ..Claims::default() };
        let id = Identity::from_claims(c).unwrap();
        assert!(headers(id).contains(&("x-internal-service".to_string(), "tes".to_string())));
        let bad = Claims { sub: Some("s".into()), svc: Some("a\nb".into()), ..Claims::default() };
        assert_eq!(Identity::from_claims(bad), Err(TokenError::BadClaim("svc")));
    }

    #[test]
    fn refuses_unsafe_subject_and_drops_unsafe_email() {
        let bad = Claims { sub: Some("a\nb".into()), ..Claims::default() };
        assert!(Identity::from_claims(bad).is_err());
        let c = Claims { sub: Some("u".into()), email: Some("x\r\ny".into()), ..Claims::default() };
        let id = Identity::from_claims(c).unwrap();
        assert_eq!(headers(id), vec![("x-user-id".to_string(), "u".to_string())]);
        let one = Claims { sub: Some("u".into()), roles: vec!["user".into()], ..Claims::default() };
        let one = Identity::from_claims(one).unwrap();
        assert_eq!(one.joined_roles(), None, "one role is sent as it is");
        assert_eq!(headers(one)[1], ("x-user-roles".to_string(), "user".to_string()));
    }
}
