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

/// Why a path was refused (all 400; the code names the class).
pub const PATH_PARAMETERS: Denial =
    Denial { status: 400, code: "path_parameters", message: "paths with ';' parameters are not accepted" };
pub const DOT_SEGMENT: Denial =
    Denial { status: 400, code: "path_dot_segment", message: "paths with '.' or '..' segments are not accepted" };
pub const PATH_CHARACTERS: Denial = Denial {
    status: 400,
    code: "path_characters",
    message: "paths with backslashes, control characters, double encoding or segments ending in '.' or ' ' are not accepted",
};
pub const PATH_ENCODING: Denial =
    Denial { status: 400, code: "path_encoding", message: "the path holds a malformed percent-escape" };
/// A `_method` query parameter on a path whose rules depend on the method.
pub const METHOD_OVERRIDE: Denial = Denial {
    status: 400,
    code: "method_override",
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
pub fn check(target: &str) -> Result<(), Denial> {
    let path = crate::routes::path_only(target).as_bytes();
    let mut decoded = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < path.len() {
        if path[i] == b'%' {
            let (Some(h), Some(l)) = (path.get(i + 1).copied().and_then(hex), path.get(i + 2).copied().and_then(hex))
            else {
                return Err(PATH_ENCODING);
            };
            decoded.push(h << 4 | l);
            i += 3;
        } else {
            decoded.push(path[i]);
            i += 1;
        }
    }
    for (n, b) in decoded.iter().enumerate() {
        match *b {
            b';' => return Err(PATH_PARAMETERS),
            b'\\' | 0..=0x1f | 0x7f => return Err(PATH_CHARACTERS),
            b'%' if decoded.get(n + 1).copied().and_then(hex).is_some()
                && decoded.get(n + 2).copied().and_then(hex).is_some() =>
            {
                return Err(PATH_CHARACTERS);
            }
            _ => {}
        }
    }
    for seg in decoded.split(|b| *b == b'/') {
        if seg == b"." || seg == b".." {
            return Err(DOT_SEGMENT);
        }
        if seg.ends_with(b".") || seg.ends_with(b" ") {
            return Err(PATH_CHARACTERS);
        }
    }
    Ok(())
}

/// Whether the query string carries a `_method` parameter (any case, encoded or not), the
/// method override of Rails, Laravel, Symfony and Express's `method-override`.
pub fn has_method_param(target: &str) -> bool {
    let Some((_, query)) = target.split_once('?') else { return false };
    let query = query.split('#').next().unwrap_or(query);
    query.split('&').any(|pair| {
        let key = pair.split('=').next().unwrap_or(pair);
        let key = key.replace("%5F", "_").replace("%5f", "_");
        key.eq_ignore_ascii_case("_method")
    })
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
        assert!(!has_method_param("/a?method=DELETE"));
        assert!(!has_method_param("/a/_method=DELETE"));
        assert!(!has_method_param("/a"));
    }
}
