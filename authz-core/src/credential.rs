//! Which credential a request carries: a Bearer JWT, an opaque API key, or none.

use crate::denial::codes;
use crate::headers::{AUTHORIZATION, X_API_KEY};

/// The credential found on a request. Borrowed from the request's headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
    /// A credential we cannot use: unknown scheme, empty token, two credentials at once.
    Invalid(&'static str),
}

impl Credential<'_> {
    /// Kind for logs and audit; never the credential itself.
    pub fn kind(&self) -> &'static str {
        match self {
            Credential::None => "none",
            Credential::Bearer(_) => "jwt",
            Credential::ApiKey(_) => "api_key",
            Credential::Invalid(_) => "invalid",
        }
    }
}

/// Finds the credential among `headers`. Values are bytes because HTTP allows non-UTF-8
/// header values; a credential that is not ASCII is refused.
pub fn extract<'a, N: AsRef<str>, V: AsRef<[u8]>>(headers: &'a [(N, V)]) -> Credential<'a> {
    let mut authorization = None;
    let mut api_key = None;
    for (name, value) in headers {
        let name = name.as_ref();
        let slot = if name.eq_ignore_ascii_case(AUTHORIZATION) {
            &mut authorization
        } else if name.eq_ignore_ascii_case(X_API_KEY) {
            &mut api_key
        } else {
            continue;
        };
        if slot.is_some() {
            return Credential::Invalid(codes::DUPLICATE_CREDENTIAL_HEADER);
        }
        match std::str::from_utf8(value.as_ref()) {
            Ok(v) => *slot = Some(v),
            Err(_) => return Credential::Invalid(codes::MALFORMED_CREDENTIAL),
        }
    }
    match (authorization, api_key) {
        (None, None) => Credential::None,
        (Some(_), Some(_)) => Credential::Invalid(codes::AMBIGUOUS_CREDENTIALS),
        (None, Some(key)) => token_or_invalid(key.trim(), Credential::ApiKey),
        (Some(auth), None) => {
            let auth = auth.trim();
            let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
            let rest = rest.trim_start();
            if scheme.eq_ignore_ascii_case("bearer") {
                token_or_invalid(rest, Credential::Bearer)
            } else if scheme.eq_ignore_ascii_case("apikey") {
                token_or_invalid(rest, Credential::ApiKey)
            } else {
                Credential::Invalid(codes::UNSUPPORTED_AUTH_SCHEME)
            }
        }
    }
}

fn token_or_invalid<'a>(value: &'a str, make: fn(&'a str) -> Credential<'a>) -> Credential<'a> {
    if value.is_empty() || value.bytes().any(|b| b.is_ascii_whitespace() || !(0x21..0x7f).contains(&b)) {
        Credential::Invalid(codes::MALFORMED_CREDENTIAL)
    } else {
        make(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn cases() {
        let cases: Vec<(Vec<(String, String)>, Credential<'static>)> = vec![
            (h(&[]), Credential::None),
            (h(&[("authorization", "Bearer abc.def.ghi")]), Credential::Bearer("abc.def.ghi")),
            (h(&[("authorization", "bearer   abc")]), Credential::Bearer("abc")),
            (h(&[("authorization", "BEARER abc ")]), Credential::Bearer("abc")),
            (h(&[("authorization", "Bearer")]), Credential::Invalid(codes::MALFORMED_CREDENTIAL)),
            (h(&[("authorization", "Bearer a b")]), Credential::Invalid(codes::MALFORMED_CREDENTIAL)),
            (h(&[("authorization", "Basic dXNlcjpwdw==")]), Credential::Invalid(codes::UNSUPPORTED_AUTH_SCHEME)),
            (h(&[("authorization", "ApiKey k-123")]), Credential::ApiKey("k-123")),
            (h(&[("x-api-key", "k-123")]), Credential::ApiKey("k-123")),
            (
                h(&[("x-api-key", "k"), ("authorization", "Bearer t")]),
                Credential::Invalid(codes::AMBIGUOUS_CREDENTIALS),
            ),
            (
                h(&[("authorization", "Bearer t"), ("authorization", "Bearer u")]),
                Credential::Invalid(codes::DUPLICATE_CREDENTIAL_HEADER),
            ),
            (h(&[("authorization", "Bearer t\u{7f}")]), Credential::Invalid(codes::MALFORMED_CREDENTIAL)),
        ];
        for (headers, want) in cases {
            let got = extract(&headers);
            // Compare through Debug to sidestep the borrowed lifetime of `got`.
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "{headers:?}");
        }
    }
}
