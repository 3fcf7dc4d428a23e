//! Refusals as the client sees them: a status, a stable code, a message and the trace id.

use crate::token::TokenError;

pub mod codes;

/// A refused request. `code` is machine-readable and stable; `message` is for humans and
/// never contains a credential or a claim value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub status: u16,
    pub code: &'static str,
    pub message: &'static str,
}

impl Denial {
    pub const fn unauthorized(code: &'static str, message: &'static str) -> Self {
        Self { status: 401, code, message }
    }

    pub const fn forbidden(code: &'static str, message: &'static str) -> Self {
        Self { status: 403, code, message }
    }

    pub const fn unavailable(code: &'static str, message: &'static str) -> Self {
        Self { status: 503, code, message }
    }

    pub const fn missing_credential() -> Self {
        Self::unauthorized(codes::MISSING_CREDENTIAL, "authentication required")
    }

    /// An API key that does not have the configured shape (`apiKeyFormat`).
    pub const fn malformed_api_key() -> Self {
        Self::unauthorized(codes::API_KEY_MALFORMED, "the API key does not have the expected form")
    }

    /// Too many failed credentials from this client: its unknown credentials are not looked
    /// up for a while (429).
    pub const fn too_many_failures() -> Self {
        Self {
            status: 429,
            code: codes::TOO_MANY_FAILED_CREDENTIALS,
            message: "too many failed credentials from this client",
        }
    }

    /// The sidecar's budget for calls to the auth service is spent: 503, never a pass.
    pub const fn overloaded() -> Self {
        Self::unavailable(codes::AUTHZ_OVERLOADED, "the authorization service is overloaded")
    }

    pub fn invalid_credential(code: &'static str) -> Self {
        Self::unauthorized(code, "the credential could not be used")
    }

    /// A token refusal: always 401 (keys being unavailable is decided by the caller, as 503).
    pub fn from_token_error(e: &TokenError) -> Self {
        Self::unauthorized(e.code(), "the token was refused")
    }

    /// The JSON body: `{"error": code, "message": ..., "trace_id": ...}`.
    pub fn body(&self, trace_id: &str) -> String {
        serde_json::json!({"error": self.code, "message": self.message, "trace_id": trace_id}).to_string()
    }

    /// `WWW-Authenticate` value for 401s (RFC 6750), else `None`.
    pub fn www_authenticate(&self) -> Option<String> {
        match (self.status, self.code) {
            // RFC 6750 §3.1: no error code when the request carried no credential at all.
            (401, "missing_credential") => Some("Bearer".to_string()),
            (401, code) => Some(format!("Bearer error=\"invalid_token\", error_description=\"{code}\"")),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_and_challenge() {
        let d = Denial::from_token_error(&TokenError::Expired);
        let v: serde_json::Value = serde_json::from_str(&d.body("t-1")).unwrap();
        assert_eq!(v["error"], "token_expired");
        assert_eq!(v["trace_id"], "t-1");
        assert_eq!(d.status, 401);
        assert!(d.www_authenticate().unwrap().starts_with("Bearer "));
        assert_eq!(Denial::unavailable("x", "y").www_authenticate(), None);
    }
}
