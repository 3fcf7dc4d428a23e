//! Path forms that the policy and an upstream framework could read differently: refused (400)
//! before any rule is looked at.
//!
//! Envoy resolves literal dot segments and merges slashes before a filter sees the path
//! (`normalize_path`, `merge_slashes`), and decodes percent-encoded unreserved characters.
//! What it leaves is still dangerous: `..;` is not a dot segment to Envoy, but Tomcat, Jetty and
//! Spring drop the `;` parameter and then resolve `..`; `%2e%2e` arrives decoded as `..` inside
//! such a segment; a `\` is a separator to some servers; a double-encoded `%252e` becomes a dot
//! for a framework that decodes once more. The policy must decide on the path the upstream acts
//! on, and no rule can be written for every reading, so these forms are refused:
//! - a `;` anywhere in the path (matrix or path parameters), encoded or not;
//! - a `.` or `..` segment after decoding, or a segment ending in `.` or a space (IIS and
//!   Windows file systems drop those, so `/admin.` and `/admin%20` are `/admin` there);
//! - a `\`, a control byte, or a NUL after decoding;
//! - an encoded `%` that decodes to another escape (double encoding);
//! - a malformed escape.

use crate::denial::Denial;
use crate::denial::codes;

/// Why a path was refused (all 400; the code names the class).
pub const PATH_PARAMETERS: Denial =
    Denial { status: 400, code: codes::PATH_PARAMETERS, message: "paths with ';' parameters are not accepted" };
pub const DOT_SEGMENT: Denial =
    Denial { status: 400, code: codes::PATH_DOT_SEGMENT, message: "paths with '.' or '..' segments are not accepted" };
pub const PATH_CHARACTERS: Denial = Denial {
    status: 400,
    code: codes::PATH_CHARACTERS,
    message: "paths with backslashes, control characters, double encoding or segments ending in '.' or ' ' are not accepted",
};
pub const PATH_ENCODING: Denial =
    Denial { status: 400, code: codes::PATH_ENCODING, message: "the path holds a malformed percent-escape" };
/// A `_method` query parameter on a path whose rules depend on the method.
pub const METHOD_OVERRIDE: Denial = Denial {
    status: 400,
    code: codes::METHOD_OVERRIDE,
    message: "a _method parameter is not accepted where the policy depends on the method",
};

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Checks the path part of a request target (the query is ignored; see [`has_method_param`]).
/// One pass over the bytes, decoding as it goes, without allocating: it runs on every request.
/// A malformed escape or a forbidden character is reported where it is met; a dot segment or a
/// segment ending in `.`/space only if nothing else is wrong.
pub fn check(target: &str) -> Result<(), Denial> {
    let path = crate::routes::path_only(target).as_bytes();
    // Most paths hold none of the bytes any rule below is about.
    if !path.iter().any(|b| matches!(*b, b'%' | b';' | b'\\' | b'.' | b' ' | 0..=0x1f | 0x7f)) {
        return Ok(());
    }
    let mut segment = Segment::default();
    let mut later: Option<Denial> = None;
    // Double encoding: a decoded `%` (from `%25`) followed by two decoded hex digits.
    let mut escaped_pct = 0u8;
    let mut i = 0;
    while i < path.len() {
        let b = if path[i] == b'%' {
            let (Some(h), Some(l)) = (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex))
            else {
                return Err(PATH_ENCODING);
            };
            i += 3;
            h << 4 | l
        } else {
            i += 1;
            path[i - 1]
        };
        escaped_pct = match (escaped_pct, b) {
            (0, b'%') => 1,
            (1 | 2, _) if hex(b).is_some() => escaped_pct + 1,
            (_, b'%') => 1,
            _ => 0,
        };
        if escaped_pct == 3 {
            return Err(PATH_CHARACTERS);
        }
        match b {
            b';' => return Err(PATH_PARAMETERS),
            b'\\' | 0..=0x1f | 0x7f => return Err(PATH_CHARACTERS),
            b'/' => {
                later = later.or(segment.verdict());
                segment = Segment::default();
            }
            _ => segment.push(b),
        }
    }
    match later.or(segment.verdict()) {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// What is known of the current (decoded) path segment.
#[derive(Default)]
struct Segment {
    len: usize,
    only_dots: bool,
    last: u8,
}

impl Segment {
    fn push(&mut self, b: u8) {
        self.only_dots = (self.len == 0 || self.only_dots) && b == b'.';
        self.len += 1;
        self.last = b;
    }

    fn verdict(&self) -> Option<Denial> {
        match self.len {
            0 => None,
            1 | 2 if self.only_dots => Some(DOT_SEGMENT),
            _ if self.last == b'.' || self.last == b' ' => Some(PATH_CHARACTERS),
            _ => None,
        }
    }
}

/// Whether the query string carries a `_method` parameter (any case, any escaping), the
/// method override of Rails, Laravel, Symfony and Express's `method-override`.
pub fn has_method_param(target: &str) -> bool {
    let Some((_, query)) = target.split_once('?') else { return false };
    let query = query.split('#').next().unwrap_or(query);
    // `_method` starts with `_` or its escape: most queries have neither.
    if !query.bytes().any(|b| b == b'_' || b == b'%') {
        return false;
    }
    // `;` separates parameters too for some parsers (Python's before 3.9.2, older Rack).
    query.split(['&', ';']).any(|pair| decoded_eq_ignore_case(pair.split('=').next().unwrap_or(pair), b"_method"))
}

/// `s` percent-decoded (and `+` as a space, as form decoding does) equals `want`, ignoring
/// ASCII case, without allocating.
fn decoded_eq_ignore_case(s: &str, want: &[u8]) -> bool {
    let b = s.as_bytes();
    let (mut i, mut j) = (0, 0);
    while i < b.len() {
        let c = match b[i] {
            b'%' => match (b.get(i + 1).copied().and_then(hex), b.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => {
                    i += 3;
                    h << 4 | l
                }
                _ => return false,
            },
            b'+' => {
                i += 1;
                b' '
            }
            c => {
                i += 1;
                c
            }
        };
        if want.get(j).is_none_or(|w| !w.eq_ignore_ascii_case(&c)) {
            return false;
        }
        j += 1;
    }
    j == want.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_frameworks_read_differently() {
        for (path, code) in [
            ("/x/..;/admin", "path_parameters"),
            ("/x/%2e%2e;/admin", "path_parameters"),
            ("/api/models/admin;x/y", "path_parameters"),
            ("/api/tes/v1/tasks;x", "path_parameters"),
            ("/api/lims/samples%3bx/1", "path_parameters"),
            ("/api/x/%2e%2e/admin", "path_dot_segment"),
            ("/api/x/%2E/admin", "path_dot_segment"),
            ("/api/x/..", "path_dot_segment"),
            ("/api/x/%5c..%5cadmin", "path_characters"),
            ("/api/x\\admin", "path_characters"),
            ("/api/x/%00", "path_characters"),
            ("/api/x/%0d%0a", "path_characters"),
            ("/api/x/%252e%252e/admin", "path_characters"),
            ("/api/x/%25%32%65", "path_characters"),
            ("/../%zz", "path_encoding"),
            ("/..;", "path_parameters"),
            ("/a/./b", "path_dot_segment"),
            ("/a/.", "path_dot_segment"),
            ("/api/models/admin./x", "path_characters"),
            ("/api/models/admin%20/x", "path_characters"),
            ("/api/models/admin%2e", "path_characters"),
            ("/api/x/%2", "path_encoding"),
            ("/api/x/%zz", "path_encoding"),
        ] {
            assert_eq!(check(path).map_err(|d| d.code), Err(code), "{path}");
        }
    }

    #[test]
    fn accepts_ordinary_paths() {
        for path in [
            "/",
            "/api/tes/v1/tasks",
            "/api/tools/run?x=1;y=2",
            "/api/rag/files/report.v2.pdf",
            "/api/rag/files/a%20b",
            "/api/rag/files/100%25",
            "/api/x/.hidden",
            "/api/x/...x",
            "/api/x/%25",
            "/api/x/a%25g1",
        ] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
    }

    #[test]
    fn method_parameter() {
        assert!(has_method_param("/api/lims/samples/1?_method=DELETE"));
        assert!(has_method_param("/a?x=1&_METHOD=delete"));
        assert!(has_method_param("/a?%5Fmethod=DELETE"));
        assert!(has_method_param("/a?_method"));
        assert!(has_method_param("/a?_%6Dethod=DELETE"));
        assert!(has_method_param("/a?x=1;_method=DELETE"));
        assert!(!has_method_param("/a?method=DELETE"));
        assert!(!has_method_param("/a?_methods=DELETE"));
        assert!(!has_method_param("/a?_metho=DELETE"));
        assert!(!has_method_param("/a/_method=DELETE"));
        assert!(!has_method_param("/a"));
    }
}
