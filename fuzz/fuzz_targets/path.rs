//! The path guard (`authz_core::path_guard`) on any request target: never panics, and what it
//! lets through holds, once percent-decoded, none of the forms an upstream could read
//! differently from the policy (`;`, `\`, control bytes, `.`/`..` segments, segments ending in
//! `.` or a space, a decoded escape). Case folding is checked on the way: a protected rule matches a path exactly
//! when it matches the same path in lower case.
#![no_main]

use authz_core::path_guard;
use authz_core::routes::{Matched, RouteSpec, RouteTable};
use libfuzzer_sys::fuzz_target;

fn decode(path: &str) -> Vec<u8> {
    let b = path.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let target = String::from_utf8_lossy(data);
    let _ = path_guard::has_method_param(&target);
    if path_guard::check(&target).is_err() {
        return;
    }
    let path = authz_core::routes::path_only(&target);
    let decoded = decode(path);
    assert!(!decoded.iter().any(|b| matches!(*b, b';' | b'\\' | 0..=0x1f | 0x7f)), "{path:?}");
    let hexd = |b: u8| b.is_ascii_hexdigit();
    assert!(!decoded.windows(3).any(|w| w[0] == b'%' && hexd(w[1]) && hexd(w[2])), "double encoding {path:?}");
    for seg in decoded.split(|b| *b == b'/') {
        assert!(seg != b"." && seg != b"..", "{path:?}");
        assert!(!seg.ends_with(b".") && !seg.ends_with(b" "), "{path:?}");
    }
    let spec: RouteSpec =
        serde_json::from_value(serde_json::json!({"id": "admin", "prefix": "/api/admin", "rolesAnyOf": ["a"]}))
            .expect("a valid rule");
    let Ok(table) = RouteTable::new(vec![], vec![], vec![spec]) else { return };
    let hit = |p: &str| matches!(table.find("GET", p), Matched::Protected(Some(_)));
    assert_eq!(hit(path), hit(&path.to_ascii_lowercase()), "{path:?}");
});
