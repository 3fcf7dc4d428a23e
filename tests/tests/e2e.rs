//! End-to-end tests: real Envoy (with the built `.wasm` or native ext_authz), the real sidecar
//! binary, real Redis, and the development stand-ins. Run by `make test`, which builds the
//! artifacts first.

mod e2e {
    pub mod bypass;
    pub mod client;
    pub mod cluster;
    pub mod config_errors;
    pub mod deploy;
    pub mod exposure;
    pub mod ext_authz;
    pub mod faults;
    pub mod garbage;
    pub mod hostile;
    pub mod identity;
    pub mod images;
    pub mod keys;
    pub mod nginx;
    pub mod observability;
    pub mod policy;
    pub mod providers;
    pub mod quota;
    pub mod rego;
    pub mod revocation;
    pub mod sidecar;
    pub mod sources;
    pub mod spoofing;
    pub mod verdicts;
    pub mod wasm;
}
