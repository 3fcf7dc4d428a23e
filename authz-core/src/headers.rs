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

/// Headers that make an upstream framework act on another method, URL or user than the one
/// the policy decided on (Rails, Express's method-override, Symfony, IIS/ASP.NET rewrites,
/// Envoy's own rewrite record, other gateways' identity headers). Removed from every request
/// by default (`overrideHeaders` replaces the list).
pub const DEFAULT_OVERRIDE_HEADERS: &[&str] = &[
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-envoy-original-path",
    "x-envoy-original-url",
    // Identity headers of other gateways (oauth2-proxy, nginx auth_request setups, Apache's
    // REMOTE_USER convention) that a service behind us may also trust.
    "x-forwarded-user",
    "x-forwarded-email",
    "x-forwarded-preferred-username",
    "x-forwarded-groups",
    "x-auth-request-user",
    "x-auth-request-email",
    "x-remote-user",
    "remote-user",
];

/// Which incoming headers are identity headers and must be removed.
#[derive(Debug, Clone)]
pub struct StripRules {
    /// Extra exact names (lower case) beyond the built-in `x-user-*`, `x-internal-service` and
    /// `x-quota-lease`.
    extra: Vec<String>,
    /// Method and URL override headers (see [`DEFAULT_OVERRIDE_HEADERS`]).
    overrides: Vec<String>,
    /// The first letters (lower case) of every name above and of `x-user-*`: most request
    /// headers are told apart by their first byte alone (this runs for every header).
    first_letters: Vec<u8>,
}

impl Default for StripRules {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

/// Header names compared as CGI, WSGI and Rack read them: case-insensitively, with `_` and
/// `-` the same (`X_User_Id` arrives there as `HTTP_X_USER_ID`, like `X-User-Id`).
fn same_name(a: &[u8], b: &[u8]) -> bool {
    let fold = |c: u8| if c == b'_' { b'-' } else { c.to_ascii_lowercase() };
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fold(*x) == fold(*y))
}

impl StripRules {
    /// `extra` names are matched case-insensitively; the override headers are the defaults.
    pub fn new(extra: impl IntoIterator<Item = String>) -> Self {
        Self {
            extra: extra.into_iter().map(|s| s.to_ascii_lowercase()).collect(),
            overrides: DEFAULT_OVERRIDE_HEADERS.iter().map(|s| (*s).to_string()).collect(),
            first_letters: Vec::new(),
        }
        .indexed()
    }

    /// The rules a host's configuration asks for: `extra` names, and `overrides` replacing the
    /// built-in override list when given (`overrideHeaders` in the filter and the sidecar).
    pub fn configured(extra: impl IntoIterator<Item = String>, overrides: Option<Vec<String>>) -> Self {
        let rules = Self::new(extra);
        match overrides {
            Some(list) => rules.with_overrides(list),
            None => rules,
        }
    }

    /// Replaces the list of method and URL override headers.
    #[must_use]
    pub fn with_overrides(mut self, overrides: impl IntoIterator<Item = String>) -> Self {
        self.overrides = overrides.into_iter().map(|s| s.to_ascii_lowercase()).collect();
        self.indexed()
    }

    fn indexed(mut self) -> Self {
        let mut first: Vec<u8> = self.extra.iter().chain(&self.overrides).filter_map(|n| n.bytes().next()).collect();
        first.push(b'x');
        first.sort_unstable();
        first.dedup();
        self.first_letters = first;
        self
    }

    /// True for a header a client must never be able to set, in any spelling: case, and `_`
    /// for `-`.
    pub fn is_identity_header(&self, name: &str) -> bool {
        let n = name.as_bytes();
        match n.first() {
            Some(b) if self.first_letters.contains(&b.to_ascii_lowercase()) => {}
            _ => return false,
        }
        let starts_x_user = n.len() > 7 && same_name(&n[..7], b"x-user-");
        starts_x_user
            || same_name(n, X_INTERNAL_SERVICE.as_bytes())
            || same_name(n, X_QUOTA_LEASE.as_bytes())
            || self.extra.iter().chain(&self.overrides).any(|e| same_name(n, e.as_bytes()))
    }
}

/// True when `value` can travel as an HTTP header value without reinterpretation: visible
/// ASCII and inner spaces only (no CR/LF, no control bytes, no commas when `list_item`). Edge
/// spaces are refused too: HTTP strips them from a header value (RFC 9110 §5.5), so the
/// service would read `"u-alice "` as `u-alice` while quota, revocation and audit keyed on
/// the claim as it was.
pub fn is_safe_value(value: &str, list_item: bool) -> bool {
    !value.is_empty()
        && !value.starts_with(' ')
        && !value.ends_with(' ')
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
    fn underscore_spellings_and_overrides() {
        let rules = StripRules::default();
        for name in ["X_User_Id", "x_user_roles", "X_Internal_Service", "X-Quota_Lease", "x_user-email"] {
            assert!(rules.is_identity_header(name), "{name}");
        }
        for name in ["X-HTTP-Method-Override", "x_http_method", "X-Method-Override", "X-Original-URL", "x-rewrite-url"]
        {
            assert!(rules.is_identity_header(name), "{name}");
        }
        let no_overrides = StripRules::default().with_overrides(Vec::new());
        assert!(!no_overrides.is_identity_header("x-http-method-override"));
        assert!(no_overrides.is_identity_header("x_user_id"));
    }

    #[test]
    fn safe_values() {
        assert!(is_safe_value("alice@example.org", false));
        assert!(!is_safe_value("a\r\nx-user-id: admin", false));
        assert!(!is_safe_value("", false));
        assert!(!is_safe_value("a,b", true));
        assert!(is_safe_value("a,b", false));
        assert!(!is_safe_value("é", false));
        assert!(!is_safe_value("u-alice ", false));
        assert!(!is_safe_value(" admin", true));
        assert!(is_safe_value("Ada Lovelace", false));
    }
}
