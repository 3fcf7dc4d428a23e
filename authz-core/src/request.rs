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
    /// How the client's `x-trace-id` compares with `trace_id`, so a host that edits headers
    /// in place knows whether it must touch it at all.
    pub client_trace: ClientTrace,
    /// Whether the trace id came from the client (its `x-trace-id` or `traceparent`) rather
    /// than being made by the gateway (audit records say so).
    pub client_chosen: bool,
}

/// The client's `x-trace-id` header(s) against the trace id chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTrace {
    /// Exactly one, and it is the trace id: nothing to change.
    Kept,
    /// None was sent: the trace id must be added.
    Absent,
    /// One or more that are not the trace id (malformed, duplicated): remove, then add.
    Replaced,
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
    let mut made = false;
    let trace_id = trace::resolve(x_trace.filter(|_| x_trace_count == 1), traceparent, || {
        made = true;
        random()
    });
    let client_trace = match (x_trace_count, x_trace) {
        (0, _) => ClientTrace::Absent,
        (1, Some(v)) if v == trace_id => ClientTrace::Kept,
        _ => ClientTrace::Replaced,
    };
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
    Sanitized { headers: kept, trace_id, removed, client_trace, client_chosen: !made }
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
        assert_eq!(s.client_trace, ClientTrace::Replaced);
    }

    #[test]
    fn reports_whether_the_client_trace_id_stays() {
        let id = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";
        let rules = StripRules::default();
        assert_eq!(sanitize(h(&[("x-trace-id", id)]), &rules, || [3; 16]).client_trace, ClientTrace::Kept);
        assert_eq!(sanitize(h(&[("accept", "*/*")]), &rules, || [3; 16]).client_trace, ClientTrace::Absent);
        let dup = sanitize(h(&[("x-trace-id", id), ("X-Trace-Id", id)]), &rules, || [3; 16]);
        assert_eq!(dup.client_trace, ClientTrace::Replaced);
        // A traceparent-derived id never equals a client's malformed x-trace-id.
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let s = sanitize(h(&[("x-trace-id", "bogus"), ("traceparent", tp)]), &rules, || [3; 16]);
        assert_eq!(s.client_trace, ClientTrace::Replaced);
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
