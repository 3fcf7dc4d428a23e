//! Every denial code, in one place: they are a public contract (clients, dashboards and audit
//! readers match on them; the README lists them all, and a test keeps it so). A code names why
//! a request was refused, never a credential or a claim value.

pub const ACTION_TOKEN_INVALID: &str = "action_token_invalid";
pub const ACTION_TOKEN_REQUIRED: &str = "action_token_required";
pub const ACTION_TOKEN_REVOKED: &str = "action_token_revoked";
pub const ACTION_TOKEN_USED: &str = "action_token_used";
pub const AMBIGUOUS_CREDENTIALS: &str = "ambiguous_credentials";
pub const API_KEY_INVALID: &str = "api_key_invalid";
pub const API_KEY_MALFORMED: &str = "api_key_malformed";
pub const API_KEY_NOT_ALLOWED: &str = "api_key_not_allowed";
pub const API_KEY_REVOKED: &str = "api_key_revoked";
pub const AUTHZ_OVERLOADED: &str = "authz_overloaded";
pub const AUTHZ_UNAVAILABLE: &str = "authz_unavailable";
pub const BODY_TOO_LARGE: &str = "body_too_large";
pub const CLAIM_MISMATCH: &str = "claim_mismatch";
pub const DUPLICATE_CREDENTIAL_HEADER: &str = "duplicate_credential_header";
pub const ENDPOINT_NOT_PERMITTED: &str = "endpoint_not_permitted";
pub const FILTER_UNCONFIGURED: &str = "filter_unconfigured";
pub const MALFORMED_CREDENTIAL: &str = "malformed_credential";
pub const METHOD_OVERRIDE: &str = "method_override";
pub const MISSING_CREDENTIAL: &str = "missing_credential";
pub const MISSING_ROLE: &str = "missing_role";
pub const MISSING_SCOPE: &str = "missing_scope";
pub const NO_MATCHING_RULE: &str = "no_matching_rule";
pub const PATH_CHARACTERS: &str = "path_characters";
pub const PATH_DOT_SEGMENT: &str = "path_dot_segment";
pub const PATH_ENCODING: &str = "path_encoding";
pub const PATH_PARAMETERS: &str = "path_parameters";
pub const POLICY_DENIED: &str = "policy_denied";
pub const POLICY_ERROR: &str = "policy_error";
pub const QUOTA_EXCEEDED: &str = "quota_exceeded";
pub const QUOTA_REQUEST_INVALID: &str = "quota_request_invalid";
pub const QUOTA_UNAVAILABLE: &str = "quota_unavailable";
pub const REAUTHENTICATION_REQUIRED: &str = "reauthentication_required";
pub const REVOCATIONS_STALE: &str = "revocations_stale";
pub const SERVICE_ONLY: &str = "service_only";
pub const SERVICE_TOKEN_REQUIRED: &str = "service_token_required";
pub const SESSION_INVALID: &str = "session_invalid";
pub const TENANT_MISMATCH: &str = "tenant_mismatch";
pub const TOKEN_ALG_MISMATCH: &str = "token_alg_mismatch";
pub const TOKEN_BAD_CLAIM: &str = "token_bad_claim";
pub const TOKEN_BAD_SIGNATURE: &str = "token_bad_signature";
pub const TOKEN_EXPIRED: &str = "token_expired";
pub const TOKEN_ISSUED_IN_FUTURE: &str = "token_issued_in_future";
pub const TOKEN_MALFORMED: &str = "token_malformed";
pub const TOKEN_MISSING_CLAIM: &str = "token_missing_claim";
pub const TOKEN_NOT_YET_VALID: &str = "token_not_yet_valid";
pub const TOKEN_REVOKED: &str = "token_revoked";
pub const TOKEN_TOO_LARGE: &str = "token_too_large";
pub const TOKEN_UNKNOWN_CRIT: &str = "token_unknown_crit";
pub const TOKEN_UNKNOWN_KEY: &str = "token_unknown_key";
pub const TOKEN_UNSUPPORTED_ALG: &str = "token_unsupported_alg";
pub const TOKEN_WRONG_AUDIENCE: &str = "token_wrong_audience";
pub const TOKEN_WRONG_ISSUER: &str = "token_wrong_issuer";
pub const TOKEN_WRONG_SOURCE: &str = "token_wrong_source";
pub const TOO_MANY_FAILED_CREDENTIALS: &str = "too_many_failed_credentials";
pub const UNSUPPORTED_AUTH_SCHEME: &str = "unsupported_auth_scheme";

/// Every code above (the README test reads this list).
pub const ALL: &[&str] = &[
    ACTION_TOKEN_INVALID,
    ACTION_TOKEN_REQUIRED,
    ACTION_TOKEN_REVOKED,
    ACTION_TOKEN_USED,
    AMBIGUOUS_CREDENTIALS,
    API_KEY_INVALID,
    API_KEY_MALFORMED,
    API_KEY_NOT_ALLOWED,
    API_KEY_REVOKED,
    AUTHZ_OVERLOADED,
    AUTHZ_UNAVAILABLE,
    BODY_TOO_LARGE,
    CLAIM_MISMATCH,
    DUPLICATE_CREDENTIAL_HEADER,
    ENDPOINT_NOT_PERMITTED,
    FILTER_UNCONFIGURED,
    MALFORMED_CREDENTIAL,
    METHOD_OVERRIDE,
    MISSING_CREDENTIAL,
    MISSING_ROLE,
    MISSING_SCOPE,
    NO_MATCHING_RULE,
    PATH_CHARACTERS,
    PATH_DOT_SEGMENT,
    PATH_ENCODING,
    PATH_PARAMETERS,
    POLICY_DENIED,
    POLICY_ERROR,
    QUOTA_EXCEEDED,
    QUOTA_REQUEST_INVALID,
    QUOTA_UNAVAILABLE,
    REAUTHENTICATION_REQUIRED,
    REVOCATIONS_STALE,
    SERVICE_ONLY,
    SERVICE_TOKEN_REQUIRED,
    SESSION_INVALID,
    TENANT_MISMATCH,
    TOKEN_ALG_MISMATCH,
    TOKEN_BAD_CLAIM,
    TOKEN_BAD_SIGNATURE,
    TOKEN_EXPIRED,
    TOKEN_ISSUED_IN_FUTURE,
    TOKEN_MALFORMED,
    TOKEN_MISSING_CLAIM,
    TOKEN_NOT_YET_VALID,
    TOKEN_REVOKED,
    TOKEN_TOO_LARGE,
    TOKEN_UNKNOWN_CRIT,
    TOKEN_UNKNOWN_KEY,
    TOKEN_UNSUPPORTED_ALG,
    TOKEN_WRONG_AUDIENCE,
    TOKEN_WRONG_ISSUER,
    TOKEN_WRONG_SOURCE,
    TOO_MANY_FAILED_CREDENTIALS,
    UNSUPPORTED_AUTH_SCHEME,
];

#[cfg(test)]
mod tests {
    #[test]
    fn the_readme_lists_every_code() {
        let readme = include_str!("../../../README.md");
        let missing: Vec<&str> = super::ALL.iter().copied().filter(|c| !readme.contains(&format!("`{c}`"))).collect();
        assert!(missing.is_empty(), "denial codes missing from the README: {missing:?}");
    }

    #[test]
    fn codes_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        assert!(super::ALL.iter().all(|c| seen.insert(*c)));
    }
}
