//! Header names the gateway owns, and the rule for which client-sent headers are removed.
//!
//! Identity headers are only trustworthy if the gateway is the only one who sets them, so
//! every request loses them on entry, on every path: public routes, denials and errors.

/// Names as Envoy presents them (lower case).
pub const X_USER_ID: &str = "x-user-id";
pub const X_USER_EMAIL: &str = "x-user-email";
pub const X_USER_ROLES: &str = "x-user-roles";
pub const X_INTERNAL_SERVICE: &str = "x-internal-service";
pub const X_TRACE_ID: &str = "x-trace-id";
pub const TRACEPARENT: &str = "traceparent";
pub const AUTHORIZATION: &str = "authorization";
pub const X_API_KEY: &str = "x-api-key";
/// A granted quota lease, set by the sidecar on compute requests (see the README).
pub const X_QUOTA_LEASE: &str = "x-quota-lease";
/// Step-up: a short-lived token authorising one action (`action` claim).
pub const X_ACTION_TOKEN: &str = "x-action-token";

/// Which incoming headers are identity headers and must be removed.
#[derive(Debug, Clone, Default)]
pub struct StripRules {
    /// Extra exact names (lower case) beyond the built-in `x-user-*`, `x-internal-service` and
    /// `x-quota-lease`.
    extra: Vec<String>,
}

impl StripRules {
    /// `extra` names are matched case-insensitively.
    pub fn new(extra: impl IntoIterator<Item = String>) -> Self {
        Self { extra: extra.into_iter().map(|s| s.to_ascii_lowercase()).collect() }
    }

    /// True for a header a client must never be able to set.
    pub fn is_identity_header(&self, name: &str) -> bool {
        let starts_x_user = name.len() > 7 && name.as_bytes()[..7].eq_ignore_ascii_case(b"x-user-");
        starts_x_user
            || name.eq_ignore_ascii_case(X_INTERNAL_SERVICE)
            || name.eq_ignore_ascii_case(X_QUOTA_LEASE)
            || self.extra.iter().any(|e| name.eq_ignore_ascii_case(e))
    }
}

/// True when `value` can travel as an HTTP header value without reinterpretation: visible
/// ASCII and spaces only (no CR/LF, no control bytes, no commas when `list_item`).
pub fn is_safe_value(value: &str, list_item: bool) -> bool {
    !value.is_empty()
        && value.len() <= 1024
        && value.bytes().all(|b| (0x20..0x7f).contains(&b) && !(list_item && b == b','))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_identity_headers_only() {
        let rules = StripRules::new(["X-Quota-Lease".to_string()]);
        for name in ["x-user-id", "X-User-Id", "x-user-roles", "x-user-anything", "x-internal-service", "x-quota-lease"]
        {
            assert!(rules.is_identity_header(name), "{name}");
        }
        for name in ["x-user", "x-userid", "authorization", "x-trace-id", "user-agent", "x-users-id"] {
            assert!(!rules.is_identity_header(name), "{name}");
        }
    }

    #[test]
    fn safe_values() {
        assert!(is_safe_value("alice@example.org", false));
        assert!(!is_safe_value("a\r\nx-user-id: admin", false));
        assert!(!is_safe_value("", false));
        assert!(!is_safe_value("a,b", true));
        assert!(is_safe_value("a,b", false));
        assert!(!is_safe_value("é", false));
    }
}
