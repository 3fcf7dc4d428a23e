//! The root context of a filter VM: configuration, and the control stream that brings keys,
//! revocations, the policy and the shared settings. The stream's state and its events are
//! handled host-free in `control`; this turns them into hostcalls.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use authz_proto::authz::v1::{ControlEvent, SubscribeRequest};
use prost::Message;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::config::Settings;
use crate::control::ControlState;
use crate::host::Envoy;
use crate::http::Http;
use crate::metrics::Metrics;
use crate::worker::{Shared, Worker};

const CONTROL_SERVICE: &str = "authz.v1.Control";
const CONTROL_METHOD: &str = "Subscribe";
const TICK: Duration = Duration::from_millis(200);

#[derive(Default)]
pub struct Root {
    shared: Option<Shared>,
    control: ControlState,
    /// The sidecar's control stream is configured (`controlStream`).
    control_stream: bool,
}

impl Root {
    fn open_stream(&mut self) {
        let Some(shared) = &self.shared else { return };
        let settings = Rc::clone(&shared.borrow().settings);
        let metadata = settings.sidecar_metadata.pairs();
        let opened = self.open_grpc_stream(&settings.sidecar_cluster, CONTROL_SERVICE, CONTROL_METHOD, metadata);
        let now = self.get_current_time();
        match opened {
            Ok(token) => {
                let req = SubscribeRequest { node: "envoy-filter".into() }.encode_to_vec();
                // Server streaming: one request, then half-close.
                self.send_grpc_stream_message(token, Some(&req), true);
                self.control.opened(token, now);
            }
            Err(status) => {
                log::warn(&format!("control stream to {} could not be opened: {status:?}", settings.sidecar_cluster));
                self.control.open_failed(now, &shared.borrow());
            }
        }
    }
}

impl Context for Root {
    fn on_grpc_stream_message(&mut self, token_id: u32, message_size: usize) {
        let now = self.get_current_time();
        if !self.control.on_message(token_id, now) {
            return;
        }
        let Some(bytes) = self.get_grpc_stream_message(0, message_size) else { return };
        let Some(shared) = &self.shared else { return };
        match ControlEvent::decode(bytes.as_slice()) {
            Ok(event) => {
                for w in self.control.apply(&mut shared.borrow_mut(), event, now) {
                    log::warn(&w);
                }
            }
            Err(e) => log::warn(&format!("control stream: undecodable event: {e}")),
        }
    }

    fn on_grpc_stream_close(&mut self, token_id: u32, status_code: u32) {
        let now = self.get_current_time();
        let Some(shared) = &self.shared else { return };
        if self.control.on_close(token_id, now, &mut shared.borrow_mut()) {
            log::info(&format!("control stream closed (grpc status {status_code}); reconnecting"));
        }
    }
}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let bytes = self.get_plugin_configuration().unwrap_or_default();
        let settings = match Settings::from_json(&bytes) {
            Ok(s) => s,
            Err(e) => {
                log::error(&e.to_string());
                return false;
            }
        };
        let control = settings.control_stream;
        let mut worker = Worker::new(settings, Metrics::define());
        worker.use_envoy_crypto();
        self.shared = Some(Rc::new(RefCell::new(worker)));
        // The tick flushes the request counters, with or without a control stream.
        self.set_tick_period(TICK);
        self.control_stream = control;
        if control {
            self.open_stream();
        }
        true
    }

    fn on_tick(&mut self) {
        crate::metrics::flush();
        let now = self.get_current_time();
        let Some(shared) = self.shared.clone() else { return };
        shared.borrow_mut().clock = now.duration_since(std::time::UNIX_EPOCH).ok().map(|d| d.as_secs());
        if !self.control_stream {
            return;
        }
        let tick = self.control.tick(now, &mut shared.borrow_mut());
        for w in &tick.warnings {
            log::warn(w);
        }
        if let Some(token) = tick.cancel {
            // Through the hostcall, not the SDK's wrapper (which unwraps): a stream the host
            // has already forgotten is not an error worth a VM.
            let _ = proxy_wasm::hostcalls::cancel_grpc_stream(token);
        }
        if tick.open {
            self.open_stream();
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http::new(Envoy, self.shared.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Logging through the host, ignoring a failed log call (nothing useful can be done with it).
pub mod log {
    use proxy_wasm::hostcalls;
    use proxy_wasm::types::LogLevel;

    pub fn error(msg: &str) {
        let _ = hostcalls::log(LogLevel::Error, msg);
    }
    pub fn warn(msg: &str) {
        let _ = hostcalls::log(LogLevel::Warn, msg);
    }
    pub fn info(msg: &str) {
        let _ = hostcalls::log(LogLevel::Info, msg);
    }
}
