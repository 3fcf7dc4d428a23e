//! The gateway's sidecar: a complete `envoy.service.auth.v3.Authorization` server plus the
//! `authz.v1` control stream that keeps every filter VM's keys current.
//!
//! It takes what the filter cannot decide alone (tokens whose key it does not hold, opaque
//! API keys) and, on its own, serves Envoy's native `ext_authz` filter. State shared across
//! replicas lives in Redis; the platform's auth service is the source of keys and API-key
//! answers.

pub mod audit;
pub mod backend;
pub mod check;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod metrics;
pub mod ops;
pub mod policy;
pub mod quota;
pub mod serve;
pub mod yaml;
