//! `/auth/verify` for nginx's `auth_request`: nginx asks about the request it is serving by
//! sending its URI and method in `X-Original-URI` and `X-Original-Method` (the names nginx's
//! documentation and other auth proxies use). The gateway then decides for that request, with
//! the route policy of the original path and method, so a user allowed on `/api/tools` but not
//! on `/api/lims/admin` gets 200 for the first and 403 for the second.
//!
//! nginx sends `$request_uri` as the client wrote it; Envoy never normalised it. So the path is
//! brought to the form Envoy gives a filter (percent-encoded unreserved characters decoded,
//! repeated slashes merged, an escaped `/` or `\` refused as Envoy's configuration never lets one
//! through) and the path guard then refuses what an upstream could read differently, exactly
//! as for a request that reaches Envoy itself.

use crate::denial::Denial;
use crate::path_guard::{PATH_CHARACTERS, PATH_ENCODING};

/// Where nginx asks.
pub const VERIFY_PATH: &str = "/auth/verify";
pub const X_ORIGINAL_URI: &str = "x-original-uri";
pub const X_ORIGINAL_METHOD: &str = "x-original-method";

/// The longest original URI taken (nginx's own default header buffer is 8 KiB).
const MAX_URI: usize = 8192;

/// The request nginx asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub method: String,
    pub path: String,
}

/// For a request to [`VERIFY_PATH`] that carries `X-Original-URI`: the original request, or
/// why it cannot be decided (400). `None` for any other request (decided as it is).
pub fn original<V: AsRef<[u8]>>(path: &str, headers: &[(String, V)]) -> Option<Result<Original, Denial>> {
    if crate::routes::path_only(path) != VERIFY_PATH {
        return None;
    }
    let uri = header(headers, X_ORIGINAL_URI)?;
    Some(parse(uri, header(headers, X_ORIGINAL_METHOD)))
}

fn header<'a, V: AsRef<[u8]>>(headers: &'a [(String, V)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_ref())
}

fn parse(uri: &[u8], method: Option<&[u8]>) -> Result<Original, Denial> {
    let method = match method {
        None => "GET".to_string(),
        Some(m) if !m.is_empty() && m.len() <= 32 && m.iter().all(u8::is_ascii_uppercase) => {
            String::from_utf8_lossy(m).into_owned()
        }
        Some(_) => return Err(PATH_CHARACTERS),
    };
    if uri.len() > MAX_URI || uri.first() != Some(&b'/') || !uri.iter().all(|b| b.is_ascii_graphic()) {
        return Err(PATH_CHARACTERS);
    }
    let (path, query) = match uri.iter().position(|b| *b == b'?') {
        Some(q) => uri.split_at(q),
        None => (uri, &b""[..]),
    };
    let mut out = Vec::with_capacity(uri.len());
    let mut i = 0;
    while i < path.len() {
        let b = path[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) else { return Err(PATH_ENCODING) };
            // An escaped separator: Envoy's `path_with_escaped_slashes_action:
            // UNESCAPE_AND_REDIRECT` never lets one reach a filter, and a framework behind nginx
            // that decodes it would read another path than the policy: refused.
            if v == b'/' || v == b'\\' {
                return Err(PATH_CHARACTERS);
            }
            // RFC 3986 §6.2.2.2: an escaped unreserved character is that character.
            if v.is_ascii_alphanumeric() || b"-._~".contains(&v) {
                out.push(v);
            } else {
                out.extend_from_slice(&path[i..i + 3]);
            }
            i += 3;
            continue;
        }
        // Envoy's `merge_slashes`.
        if !(b == b'/' && out.last() == Some(&b'/')) {
            out.push(b);
        }
        i += 1;
    }
    out.extend_from_slice(query);
    // Only ASCII went in.
    Ok(Original { method, path: String::from_utf8_lossy(&out).into_owned() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(path: &str, uri: Option<&str>, method: Option<&str>) -> Option<Result<Original, Denial>> {
        let mut h: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(u) = uri {
            h.push((X_ORIGINAL_URI.into(), u.as_bytes().to_vec()));
        }
        if let Some(m) = method {
            h.push((X_ORIGINAL_METHOD.into(), m.as_bytes().to_vec()));
        }
        original(path, &h)
    }

    fn ok(uri: &str) -> String {
        ask(VERIFY_PATH, Some(uri), None).unwrap().unwrap().path
    }

    #[test]
    fn only_the_verify_path_with_an_original_uri_is_read_as_another_request() {
        assert_eq!(ask("/api/tools", Some("/api/lims"), None), None);
        assert_eq!(ask(VERIFY_PATH, None, Some("POST")), None);
        let o = ask("/auth/verify?x=1", Some("/api/lims/admin"), Some("DELETE")).unwrap().unwrap();
        assert_eq!(o, Original { method: "DELETE".into(), path: "/api/lims/admin".into() });
        assert_eq!(ask(VERIFY_PATH, Some("/a"), None).unwrap().unwrap().method, "GET");
    }

    #[test]
    fn the_original_path_is_read_as_envoy_would_give_it() {
        assert_eq!(ok("//api///lims/admin"), "/api/lims/admin");
        assert_eq!(ok("/api/%6cims/%41dmin"), "/api/lims/Admin");
        // An escaped separator is refused, not kept: a framework decoding it would read
        // `/api/lims/admin` where the policy read one segment.
        assert!(ask(VERIFY_PATH, Some("/api/lims%2Fadmin"), None).unwrap().is_err());
        assert!(ask(VERIFY_PATH, Some("/api/lims%5cadmin"), None).unwrap().is_err());
        assert_eq!(ok("/api/lims%3Aadmin"), "/api/lims%3Aadmin", "another reserved escape stays escaped");
        assert_eq!(ok("/api/tools?next=//x&y=%41"), "/api/tools?next=//x&y=%41", "the query is left alone");
        // What the path guard refuses next is left for it to refuse.
        assert_eq!(ok("/api/%2e%2e/admin"), "/api/../admin");
    }

    #[test]
    fn what_cannot_be_a_request_is_refused() {
        for (uri, method) in [
            ("api/tools", None),
            ("/api/to ols", None),
            ("/api/%zz", None),
            ("/api/%4", None),
            ("/api/tools", Some("get")),
            ("/api/tools", Some("")),
            ("/api/tools", Some("GET /x")),
        ] {
            assert!(ask(VERIFY_PATH, Some(uri), method).unwrap().is_err(), "{uri:?} {method:?}");
        }
        let long = format!("/{}", "a".repeat(MAX_URI));
        assert!(ask(VERIFY_PATH, Some(&long), None).unwrap().is_err());
    }
}
