//! The token parser and verifier: any bytes as a bearer token, against keys of every kind the
//! gateway holds (an HMAC secret and the development JWKS). Must never panic.
#![no_main]

use std::sync::OnceLock;

use authz_core::{ClaimsPolicy, KeySet};
use libfuzzer_sys::fuzz_target;

const JWKS: &str = include_str!("../../tests/fixtures/dev-jwks.json");

fn keys() -> &'static KeySet {
    static KEYS: OnceLock<KeySet> = OnceLock::new();
    KEYS.get_or_init(|| {
        authz_core::crypto::ensure_provider();
        let mut keys = KeySet::new();
        let _ = keys.extend_from_jwks_json(JWKS, authz_core::keys::Source::Local);
        keys.add_hmac_secret(b"fuzz-only-hmac-secret-0123456789", jsonwebtoken::Algorithm::HS256);
        keys
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let policy =
        ClaimsPolicy { issuers: vec!["https://auth.dev.local".into()], audiences: vec![], clock_skew_secs: 60, require_exp: true };
    if let Ok(claims) = authz_core::token::verify_token_time(&token, keys(), &policy, 1_800_000_000) {
        let _ = authz_core::Identity::from_claims(claims);
    }
});
