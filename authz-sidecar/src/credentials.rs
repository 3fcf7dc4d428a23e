//! What the sidecar knows about credentials beyond one request: the signing keys (fetched and
//! refreshed), verified identities (memory and Redis), API-key and session answers from the
//! auth service, the revocation set (Redis pub/sub), and failed credentials per client.

pub mod failures;
pub mod identity_cache;
pub mod introspect;
pub mod keystore;
pub mod provider_keys;
pub mod revocations;
pub mod session;
