//! Wire types shared by the filter and the sidecar.
//!
//! - [`authz::v1`]: the control stream (keys, and later policy and revocations) the sidecar
//!   pushes to every filter VM. With feature `grpc`, tonic client and server code too.
//! - [`audit`]: the decision record the filter and the sidecar attach to Envoy's access log.
//! - [`ext_authz`]: the subset of Envoy's `envoy.service.auth.v3` messages the filter sends
//!   and reads. The sidecar uses the full `envoy-types` definitions; this subset is
//!   wire-compatible (same field numbers, checked by tests) and keeps the wasm small.

pub mod audit;
pub mod envoy_foreign;
pub mod ext_authz;

pub mod authz {
    pub mod v1 {
        #![allow(clippy::all, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
        include!(concat!(env!("OUT_DIR"), "/authz.v1.rs"));
    }
}
