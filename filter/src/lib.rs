//! The gateway's proxy-wasm HTTP filter, loaded by Envoy's V8 runtime in every worker.
//!
//! This crate is glue: it translates proxy-wasm hostcalls to and from `authz-core`, which
//! holds every decision. Per request it reads all headers in one hostcall, strips client-sent
//! identity headers, fixes the trace id, authenticates the bearer token from a per-worker
//! cache or with locally held keys, and writes all headers back in one hostcall. Only when it
//! cannot decide (a key it does not hold, an opaque API key) does it call the sidecar.

pub mod callout;
pub mod config;
pub mod control;
mod gate;
pub mod host;
pub mod http;
pub mod metrics;
mod native;
mod root;
pub mod worker;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(root::Root::default()));
}}
