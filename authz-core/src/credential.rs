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

/// Another place a bearer token may come from, tried (in order) when a request carries neither
/// `Authorization` nor `X-API-Key`: a cookie (browser front ends), or a header with an
/// optional prefix before the token.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TokenSource {
    /// A cookie of this name.
    #[serde(default)]
    pub cookie: Option<String>,
    /// A header of this name (lower-case).
    #[serde(default)]
    pub header: Option<String>,
    /// Text before the token in that header (compared ignoring ASCII case), e.g. `"Token "`.
    #[serde(default)]
    pub prefix: Option<String>,
}

impl TokenSource {
    /// A configuration error: exactly one of `cookie` and `header`; names are tokens; the
    /// standard credential headers are not sources of their own.
    pub fn validate(&self) -> Result<(), String> {
        let token = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        match (&self.cookie, &self.header) {
            (Some(c), None) if token(c) && self.prefix.is_none() => Ok(()),
            (Some(_), None) => Err("a cookie name is letters, digits, '-', '_', '.' (and takes no prefix)".into()),
            (None, Some(h)) if matches!(h.as_str(), AUTHORIZATION | X_API_KEY | "cookie") => {
                Err(format!("{h:?} is read already"))
            }
            (None, Some(h)) if token(h) && h.bytes().all(|b| !b.is_ascii_uppercase()) => Ok(()),
            (None, Some(h)) => Err(format!("header {h:?} must be a lower-case name")),
            _ => Err("name exactly one of cookie, header".into()),
        }
    }
}

/// [`extract`], then each of `sources` in order; the source's index comes back with a token
/// found there.
pub fn extract_from<'a, N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &'a [(N, V)],
    sources: &[TokenSource],
) -> (Credential<'a>, Option<usize>) {
    let standard = extract(headers);
    if standard != Credential::None {
        return (standard, None);
    }
    for (i, source) in sources.iter().enumerate() {
        let found = match (&source.cookie, &source.header) {
            (Some(name), _) => cookie(headers, name),
            (None, Some(name)) => header_token(headers, name, source.prefix.as_deref()),
            (None, None) => None,
        };
        if let Some(value) = found {
            return (token_or_invalid(value, Credential::Bearer), Some(i));
        }
    }
    (Credential::None, None)
}

/// The value of cookie `name` (RFC 6265 §5.4: `name=value` pairs separated by `;`).
fn cookie<'a, N: AsRef<str>, V: AsRef<[u8]>>(headers: &'a [(N, V)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, v)| std::str::from_utf8(v.as_ref()).ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().split_once('=').filter(|(k, _)| *k == name).map(|(_, v)| v.trim_matches('"')))
}

fn header_token<'a, N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &'a [(N, V)],
    name: &str,
    prefix: Option<&str>,
) -> Option<&'a str> {
    let (_, v) = headers.iter().find(|(k, _)| k.as_ref().eq_ignore_ascii_case(name))?;
    let v = std::str::from_utf8(v.as_ref()).ok()?.trim();
    match prefix {
        Some(p) => v.get(..p.len()).filter(|head| head.eq_ignore_ascii_case(p)).map(|_| v[p.len()..].trim_start()),
        None => Some(v),
    }
}

/// The `Cookie` header without cookie `name` (`None`: nothing left), so an upstream does not
/// get the token it carried.
pub fn without_cookie<N: AsRef<str>, V: AsRef<[u8]>>(headers: &[(N, V)], name: &str) -> Option<String> {
    let kept: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.as_ref().eq_ignore_ascii_case("cookie"))
        .filter_map(|(_, v)| std::str::from_utf8(v.as_ref()).ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && pair.split_once('=').is_none_or(|(k, _)| k != name))
        .collect();
    (!kept.is_empty()).then(|| kept.join("; "))
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

    #[test]
    fn other_token_sources() {
        let sources = vec![
            TokenSource { cookie: Some("access_token".into()), header: None, prefix: None },
            TokenSource {
                cookie: None,
                header: Some("x-forwarded-access-token".into()),
                prefix: Some("Token ".into()),
            },
        ];
        let got = |pairs: &[(&str, &str)]| {
            let headers = h(pairs);
            let (c, i) = extract_from(&headers, &sources);
            format!("{c:?} {i:?}")
        };
        assert_eq!(got(&[("cookie", "theme=dark; access_token=abc.def.ghi")]), "Bearer(\"abc.def.ghi\") Some(0)");
        assert_eq!(got(&[("cookie", "theme=dark"), ("cookie", "access_token=t")]), "Bearer(\"t\") Some(0)");
        assert_eq!(got(&[("x-forwarded-access-token", "token t2")]), "Bearer(\"t2\") Some(1)");
        assert_eq!(got(&[("x-forwarded-access-token", "t2")]), "None None", "the prefix is required");
        assert_eq!(got(&[("authorization", "Bearer a"), ("cookie", "access_token=b")]), "Bearer(\"a\") None");
        assert_eq!(got(&[("cookie", "access_token=")]), format!("Invalid({:?}) Some(0)", codes::MALFORMED_CREDENTIAL));
        let headers = h(&[("cookie", "theme=dark; access_token=abc; lang=en")]);
        assert_eq!(without_cookie(&headers, "access_token").as_deref(), Some("theme=dark; lang=en"));
        assert_eq!(without_cookie(&h(&[("cookie", "access_token=abc")]), "access_token"), None);
        assert!(TokenSource { cookie: Some("a b".into()), header: None, prefix: None }.validate().is_err());
        assert!(TokenSource { cookie: None, header: Some("authorization".into()), prefix: None }.validate().is_err());
        assert!(TokenSource { cookie: None, header: None, prefix: None }.validate().is_err());
        assert!(sources.iter().all(|s| s.validate().is_ok()));
    }
}
