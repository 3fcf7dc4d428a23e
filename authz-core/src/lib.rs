//! The brain of the gateway: everything that decides whether a request may pass, with no I/O.
//!
//! The same code runs inside Envoy (the proxy-wasm filter, `wasm32-wasip1`) and in the gRPC
//! sidecar (native), so a request gets the same verdict wherever it is decided. Callers pass
//! the clock (`now`, Unix seconds) and randomness in; nothing here reads the environment.

pub mod api_key_format;
pub mod audit;
pub mod auth_request;
pub mod authenticator;
pub mod authorize;
pub mod cache;
pub mod claims;
pub mod credential;
pub mod crypto;
pub mod denial;
pub mod duration;
pub mod headers;
pub mod identity;
pub mod keys;
pub mod path_guard;
pub mod pipeline;
pub mod provider;
pub mod request;
pub mod revocation;
pub mod routes;
pub mod settings;
pub mod spki;
pub mod template;
pub mod token;
pub mod trace;

pub use claims::ClaimsPolicy;
pub use credential::Credential;
pub use denial::Denial;
pub use identity::Identity;
pub use keys::KeySet;
pub use token::{TokenError, verify_token};
