//! A verified identity and the headers it projects onto the upstream request.

use crate::claims::Claims;
use crate::headers::{X_USER_EMAIL, X_USER_ID, X_USER_ROLES, is_safe_value};
use crate::token::TokenError;

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
    /// Unix seconds after which this identity must not be used (the token's `exp`).
    pub expires_at: u64,
}

impl Identity {
    /// Builds the identity from verified claims. A `sub` that cannot be carried in a header
    /// verbatim refuses the token: rewriting it could make two users one.
    pub fn from_claims(c: Claims) -> Result<Self, TokenError> {
        let user_id = c.sub.ok_or(TokenError::MissingClaim("sub"))?;
        if !is_safe_value(&user_id, false) {
            return Err(TokenError::MissingClaim("sub"));
        }
        Ok(Self {
            user_id,
            email: c.email.filter(|e| is_safe_value(e, false)),
            // A role we cannot represent is not granted.
            roles: c.roles.into_iter().filter(|r| is_safe_value(r, true)).collect(),
            issuer: c.iss,
            token_id: c.jti,
            session_id: c.sid,
            expires_at: c.exp.unwrap_or(0),
        })
    }

    /// The identity headers set on the upstream request.
    pub fn headers(&self) -> Vec<(String, String)> {
        let mut h = Vec::with_capacity(3);
        h.push((X_USER_ID.to_string(), self.user_id.clone()));
        if let Some(e) = &self.email {
            h.push((X_USER_EMAIL.to_string(), e.clone()));
        }
        if !self.roles.is_empty() {
            h.push((X_USER_ROLES.to_string(), self.roles.join(",")));
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            id.headers(),
            vec![
                ("x-user-id".to_string(), "u-42".to_string()),
                ("x-user-email".to_string(), "ada@lab.org".to_string()),
                ("x-user-roles".to_string(), "admin,user".to_string()),
            ]
        );
    }

    #[test]
    fn refuses_unsafe_subject_and_drops_unsafe_email() {
        let bad = Claims { sub: Some("a\nb".into()), ..Claims::default() };
        assert!(Identity::from_claims(bad).is_err());
        let c = Claims { sub: Some("u".into()), email: Some("x\r\ny".into()), ..Claims::default() };
        let id = Identity::from_claims(c).unwrap();
        assert_eq!(id.headers(), vec![("x-user-id".to_string(), "u".to_string())]);
    }
}
