//! The few things the per-request code asks of its host, behind one trait: Envoy's hostcalls
//! in production ([`Envoy`]), a recording double in unit tests (`http/tests.rs`), so the
//! request's state machine (a pending callout, a held body) is tested without Envoy.
//!
//! Every method of [`Envoy`] goes through `proxy_wasm::hostcalls` and ignores host errors
//! where the SDK's trait methods would panic: a failed hostcall must never take a VM down.

use std::time::{Duration, UNIX_EPOCH};

pub mod fake;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType, Status};

pub trait Host {
    /// Unix seconds.
    fn now(&self) -> u64;
    fn request_headers(&self) -> Vec<(String, Vec<u8>)>;
    /// Sets (or with `None` removes every value of) a request header.
    fn set_request_header(&self, name: &str, value: Option<&str>);
    fn add_request_header(&self, name: &str, value: &str);
    fn set_response_header(&self, name: &str, value: &str);
    fn request_body(&self, size: usize) -> Vec<u8>;
    fn request_trailers(&self) -> Vec<(String, Vec<u8>)>;
    fn remove_request_trailer(&self, name: &str);
    /// A local reply; the request goes no further.
    fn send_response(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]);
    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        metadata: Vec<(&str, &[u8])>,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status>;
    fn grpc_response(&self, size: usize) -> Option<Vec<u8>>;
    fn property(&self, path: &[&str]) -> Option<Vec<u8>>;
    /// False when the host refused it.
    fn set_property(&self, path: &[&str], value: &[u8]) -> bool;
    /// Lets a paused request continue.
    fn resume(&self);
    fn warn(&self, message: &str);
}

/// Envoy, through proxy-wasm.
#[derive(Debug, Default, Clone, Copy)]
pub struct Envoy;

impl Host for Envoy {
    fn now(&self) -> u64 {
        hostcalls::get_current_time().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs())
    }

    fn request_headers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
    }

    fn set_request_header(&self, name: &str, value: Option<&str>) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn add_request_header(&self, name: &str, value: &str) {
        let _ = hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value);
    }

    fn set_response_header(&self, name: &str, value: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, Some(value));
    }

    fn request_body(&self, size: usize) -> Vec<u8> {
        hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size).ok().flatten().unwrap_or_default()
    }

    fn request_trailers(&self) -> Vec<(String, Vec<u8>)> {
        hostcalls::get_map_bytes(MapType::HttpRequestTrailers).unwrap_or_default()
    }

    fn remove_request_trailer(&self, name: &str) {
        let _ = hostcalls::set_map_value(MapType::HttpRequestTrailers, name, None);
    }

    fn send_response(&self, status: u32, headers: Vec<(&str, &str)>, body: &[u8]) {
        let _ = hostcalls::send_http_response(status, headers, Some(body));
    }

    fn dispatch_grpc(
        &self,
        cluster: &str,
        service: &str,
        method: &str,
        metadata: Vec<(&str, &[u8])>,
        message: &[u8],
        timeout: Duration,
    ) -> Result<u32, Status> {
        hostcalls::dispatch_grpc_call(cluster, service, method, metadata, Some(message), timeout)
    }

    fn grpc_response(&self, size: usize) -> Option<Vec<u8>> {
        hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).ok().flatten()
    }

    fn property(&self, path: &[&str]) -> Option<Vec<u8>> {
        hostcalls::get_property(path.to_vec()).ok().flatten()
    }

    fn set_property(&self, path: &[&str], value: &[u8]) -> bool {
        hostcalls::set_property(path.to_vec(), Some(value)).is_ok()
    }

    fn resume(&self) {
        let _ = hostcalls::resume_http_request();
    }

    fn warn(&self, message: &str) {
        let _ = hostcalls::log(LogLevel::Warn, message);
    }
}
