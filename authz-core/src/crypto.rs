//! Selects the signature backend `jsonwebtoken` uses.
//!
//! A native workspace build can compile both backends in (the filter asks for RustCrypto, the
//! sidecar for aws-lc), in which case `jsonwebtoken` refuses to guess. We install one
//! explicitly, once, before the first verification: aws-lc when present (fast, native),
//! otherwise our verify-only provider over RustCrypto crates (pure Rust, builds for wasm).

use std::sync::Once;

/// Compiled for the filter, and for the tests that hold it against aws-lc.
#[cfg(any(feature = "rust-crypto", test))]
pub mod verify_only;

#[cfg(not(any(feature = "aws-lc", feature = "rust-crypto")))]
compile_error!("authz-core needs a crypto backend: enable feature `aws-lc` or `rust-crypto`");

static INSTALL: Once = Once::new();

/// Makes sure a crypto provider is installed. Cheap after the first call.
pub fn ensure_provider() {
    INSTALL.call_once(|| {
        #[cfg(feature = "aws-lc")]
        let provider = &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER;
        #[cfg(all(feature = "rust-crypto", not(feature = "aws-lc")))]
        let provider = &verify_only::PROVIDER;
        // Another component of the process may have installed one already; either is correct.
        let _ = provider.install_default();
    });
}
