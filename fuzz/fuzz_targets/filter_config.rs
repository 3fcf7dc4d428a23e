//! The filter's plugin configuration (JSON from Envoy): refused with an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = authz_filter::config::Settings::from_json(data);
});
