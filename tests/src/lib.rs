//! End-to-end support: the development stand-ins and a harness that runs the real stack.
//!
//! Nothing here is product code. The stand-ins are honest imitations for development and
//! tests: [`auth_standin`] speaks the platform auth service's contract with demo users and a
//! development key; [`echo`] upstreams answer with what they received; [`fault_proxy`] breaks connections on command. [`stack`] starts Redis,
//! the sidecar and Envoy as real processes on 127.0.0.1 and stops them when dropped.

pub mod auth_standin;
pub mod echo;
pub mod fault_proxy;
pub mod k8s;
pub mod nginx;
pub mod paths;
pub mod raw_client;
pub mod render;
pub mod stack;
pub mod tokens;
