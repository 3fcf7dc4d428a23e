//! The route policy as the filter receives it (JSON on the control stream): parse, build the
//! table (with its prefix index), and look up a path taken from the same input.
#![no_main]

use authz_core::routes::{PolicyDocument, RouteTable};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // "<policy JSON>\n<method> <path>": the lookup is fuzzed too.
    let text = String::from_utf8_lossy(data);
    let (doc, request) = text.split_once('\n').unwrap_or((&text, "GET /api/tools/x"));
    let Ok(doc) = serde_json::from_str::<PolicyDocument>(doc) else { return };
    let Ok(table) = RouteTable::from_document(vec!["/health".into()], vec![], doc) else { return };
    let (method, path) = request.split_once(' ').unwrap_or(("GET", request));
    let _ = table.find(method, path);
});
