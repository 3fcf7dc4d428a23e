//! The entry step of every request: remove client-sent identity headers and fix the trace id.

use crate::headers::{StripRules, TRACEPARENT, X_TRACE_ID};
use crate::trace;

/// The request headers after sanitising, plus what was done to them. `V` is the value type
/// of the host: `String` in the sidecar, bytes in the filter (HTTP values need not be UTF-8).
#[derive(Debug, Clone)]
pub struct Sanitized<V> {
    /// Headers to forward: identity headers removed, `x-trace-id` set exactly once.
    pub headers: Vec<(String, V)>,
    pub trace_id: String,
    /// Names removed because a client must not set them (for ext_authz `headers_to_remove`).
    pub removed: Vec<String>,
}

/// Sanitises `headers` (names lower case). `random` is called only if a trace id must be made.
pub fn sanitize<V: AsRef<[u8]> + From<String>>(
    headers: Vec<(String, V)>,
    rules: &StripRules,
    random: impl FnOnce() -> [u8; 16],
) -> Sanitized<V> {
    let mut x_trace = None;
    let mut traceparent = None;
    let mut x_trace_count = 0;
    for (name, value) in &headers {
        if name.eq_ignore_ascii_case(X_TRACE_ID) {
            x_trace_count += 1;
            x_trace = std::str::from_utf8(value.as_ref()).ok();
        } else if name.eq_ignore_ascii_case(TRACEPARENT) {
            traceparent = std::str::from_utf8(value.as_ref()).ok();
        }
    }
    // Two X-Trace-Id headers are as good as none.
    let trace_id = trace::resolve(x_trace.filter(|_| x_trace_count == 1), traceparent, random);
    let mut removed = Vec::new();
    let mut kept = Vec::with_capacity(headers.len() + 4);
    for (name, value) in headers {
        if rules.is_identity_header(&name) {
            removed.push(name);
        } else if !name.eq_ignore_ascii_case(X_TRACE_ID) {
            kept.push((name, value));
        }
    }
    kept.push((X_TRACE_ID.to_string(), V::from(trace_id.clone())));
    Sanitized { headers: kept, trace_id, removed }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn strips_and_sets_trace() {
        let s = sanitize(
            h(&[
                ("x-user-id", "admin"),
                ("x-internal-service", "billing"),
                ("x-trace-id", "bogus"),
                ("accept", "*/*"),
                ("X-User-Roles", "admin"),
            ]),
            &StripRules::default(),
            || [1; 16],
        );
        assert_eq!(s.removed, vec!["x-user-id", "x-internal-service", "X-User-Roles"]);
        assert_eq!(s.headers, h(&[("accept", "*/*"), ("x-trace-id", &s.trace_id)]));
        assert_eq!(s.trace_id.len(), 36);
    }

    #[test]
    fn duplicate_trace_headers_are_replaced() {
        let id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        let s = sanitize(h(&[("x-trace-id", id), ("x-trace-id", id)]), &StripRules::default(), || [2; 16]);
        assert_ne!(s.trace_id, id);
        let s = sanitize(h(&[("x-trace-id", id)]), &StripRules::default(), || [2; 16]);
        assert_eq!(s.trace_id, id);
    }
}
