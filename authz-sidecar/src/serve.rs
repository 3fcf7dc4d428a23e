//! The sidecar's servers: the gRPC listeners (`Check`, the control stream, the access-log and
//! quota services) and the admin HTTP endpoints, and how they are assembled (`server`).

pub mod access_log;
pub mod admin;
pub mod control;
pub mod listen;
pub mod quota_api;
pub mod server;
