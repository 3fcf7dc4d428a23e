//! Trace ids: keep a well-formed incoming `X-Trace-Id`, else take the W3C `traceparent`
//! trace-id, else make a new UUID v4.

use uuid::Uuid;

/// The trace id for a request. `random` is only called when a new id is needed, so the
/// filter pays for randomness only when the client sent nothing usable.
pub fn resolve(x_trace_id: Option<&str>, traceparent: Option<&str>, random: impl FnOnce() -> [u8; 16]) -> String {
    if let Some(id) = x_trace_id.and_then(parse_uuid) {
        return id;
    }
    if let Some(id) = traceparent.and_then(from_traceparent) {
        return id;
    }
    uuid::Builder::from_random_bytes(random()).into_uuid().hyphenated().to_string()
}

/// A trace id as the gateway would keep it (a non-nil UUID, lower-cased), or `None`: for
/// values read back from places a client could have filled.
pub fn well_formed(s: &str) -> Option<String> {
    parse_uuid(s)
}

/// A UUID in its canonical 36-character form, returned lower-cased.
fn parse_uuid(s: &str) -> Option<String> {
    if s.len() != 36 {
        return None;
    }
    let u = Uuid::try_parse(s).ok()?;
    if u.is_nil() {
        return None;
    }
    Some(u.hyphenated().to_string())
}

/// `version "-" trace-id "-" parent-id "-" flags`, per W3C Trace Context.
fn from_traceparent(s: &str) -> Option<String> {
    let mut parts = s.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(parent, 16) || !hex(flags, 2) {
        return None;
    }
    // Version 00 has exactly four fields; later versions may append more.
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let value = u128::from_str_radix(trace, 16).ok()?;
    if value == 0 {
        return None;
    }
    Some(Uuid::from_u128(value).hyphenated().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: [u8; 16] = [7; 16];

    #[test]
    fn resolution_order() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let cases = [
            (Some("3F2504E0-4F89-41D3-9A0C-0305E82C3301"), None, "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
            (Some("3f2504e0-4f89-41d3-9a0c-0305e82c3301"), Some(tp), "3f2504e0-4f89-41d3-9a0c-0305e82c3301"),
            (Some("not-a-uuid"), Some(tp), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
            (None, Some(tp), "4bf92f35-77b3-4da6-a3ce-929d0e0e4736"),
            (Some("3f2504e04f8941d39a0c0305e82c3301"), None, "07070707-0707-4707-8707-070707070707"),
            (Some("00000000-0000-0000-0000-000000000000"), None, "07070707-0707-4707-8707-070707070707"),
            (
                None,
                Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
                "07070707-0707-4707-8707-070707070707",
            ),
            (
                None,
                Some("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
                "07070707-0707-4707-8707-070707070707",
            ),
            (
                None,
                Some("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
                "07070707-0707-4707-8707-070707070707",
            ),
            (
                None,
                Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x"),
                "07070707-0707-4707-8707-070707070707",
            ),
            (Some("\r\nx-user-id: admin"), None, "07070707-0707-4707-8707-070707070707"),
            (None, None, "07070707-0707-4707-8707-070707070707"),
        ];
        for (x, tp, want) in cases {
            assert_eq!(resolve(x, tp, || R), want, "x-trace-id={x:?} traceparent={tp:?}");
        }
    }

    #[test]
    fn generated_ids_are_v4() {
        let id = Uuid::parse_str(&resolve(None, None, || [0xab; 16])).unwrap();
        assert_eq!(id.get_version_num(), 4);
    }
}
