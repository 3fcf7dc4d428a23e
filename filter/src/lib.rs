//! The gateway's proxy-wasm HTTP filter, loaded by Envoy's V8 runtime in every worker.
//!
//! This crate is a host of `authz-core`'s decision pipeline, which holds every decision. Per
//! request it reads all headers in one hostcall, strips client-sent identity headers, fixes
//! the trace id, runs the pipeline (the bearer token from a per-worker cache or with locally
//! held keys), and edits the headers in place. Whatever the pipeline cannot decide here (a key
//! it does not hold, an API key, anything that needs shared state) goes to the sidecar, which
//! runs the same pipeline. Hostcalls sit behind `host::Host`, so the rest runs in native tests.

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
