//! Measurement baselines, not product code: the floor cost of wasm filters in Envoy.
//!
//! - configuration empty: every callback returns `Continue`. Envoy still creates a context
//!   per request and calls into V8, so the difference between this and no filter is the fixed
//!   price of being a wasm filter (variant (c) of `bench/gateway.sh`);
//! - configuration `"headers"`: also reads every request header in one call and adds four
//!   (a trace id and three identity headers), the header traffic any filter that does our job
//!   must pay (variant (c2)). The difference between this and `authz-filter` is what our own
//!   logic costs.

use std::cell::Cell;
use std::rc::Rc;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Noop,
    Get,
    Add,
    Both,
}

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(NoopRoot { headers: Rc::new(Cell::new(Mode::Noop)) }));
}}

struct NoopRoot {
    headers: Rc<Cell<Mode>>,
}

impl Context for NoopRoot {}

impl RootContext for NoopRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.headers.set(match config.trim_ascii() {
            b"headers" => Mode::Both,
            b"get" => Mode::Get,
            b"add" => Mode::Add,
            _ => Mode::Noop,
        });
        true
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Noop { headers: self.headers.get() }))
    }
}

struct Noop {
    headers: Mode,
}

impl Context for Noop {}

impl HttpContext for Noop {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let mut user = 0;
        if matches!(self.headers, Mode::Get | Mode::Both) {
            let all = self.get_http_request_headers_bytes();
            user = all.iter().find(|(k, _)| k == "authorization").map_or(0, |(_, v)| v.len());
        }
        if matches!(self.headers, Mode::Add | Mode::Both) {
            self.add_http_request_header("x-trace-id", "3f2504e0-4f89-41d3-9a0c-0305e82c3301");
            self.add_http_request_header("x-user-id", &format!("u-{user}"));
            self.add_http_request_header("x-user-email", "bench@lab.example");
            self.add_http_request_header("x-user-roles", "user");
        }
        Action::Continue
    }
}
