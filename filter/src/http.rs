//! The per-request context (the hot path): the request's state machine around the pipeline,
//! over any [`Host`] (Envoy in production, a recording double in tests).

use authz_core::denial::codes;
use std::rc::Rc;

use authz_core::Denial;
use authz_core::audit::{self as audit_record, Subject};
use authz_core::auth_request;
use authz_core::authenticator::Verified;
use authz_core::credential::{self, TokenSource};
use authz_core::headers::X_TRACE_ID;
use authz_core::pipeline::{Pipeline, Request, Table};
use authz_core::request::{ClientTrace, Sanitized, sanitize};
use authz_proto::audit;
use authz_proto::ext_authz;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

use crate::callout::{CalloutVerdict, Peers, build_check_request, interpret};
use crate::gate::{Gate, Step};
use crate::host::{Envoy, Host};
use crate::worker::Shared;

mod decide;
#[cfg(test)]
mod tests;

use decide::{Local, WorkerFacts, denial_code, header, local, set_pseudo};

pub struct Http<H: Host = Envoy> {
    host: H,
    shared: Option<Shared>,
    trace_id: String,
    /// The client chose the trace id (audit records say so).
    client_trace_chosen: bool,
    pending: Option<u32>,
    /// Which phases may pass: only the verdict opens it.
    gate: Gate,
    /// A compute route's sanitised headers, held until its body has arrived.
    held: Option<Vec<(String, Vec<u8>)>>,
    /// A bearer token sent to the sidecar because no local key fits it: if the sidecar refuses
    /// its key too, its `kid` is refused locally for a while (`Authenticator`).
    unknown_key_token: Option<String>,
    /// The matched rule's id and the credential's kind, for the audit record.
    rule: String,
    credential: &'static str,
    /// Headers the sidecar's answer adds to the response (a Rego decision's
    /// `response_headers_to_add`); empty for nearly every request.
    response_headers: Vec<(String, String)>,
}

/// A denial for a compute request whose body is over `maxComputeBodyBytes`.
const BODY_TOO_LARGE: Denial = Denial {
    status: 413,
    code: codes::BODY_TOO_LARGE,
    message: "the request body is larger than a compute route accepts",
};

impl<H: Host> Http<H> {
    pub fn new(host: H, shared: Option<Shared>) -> Self {
        Self {
            host,
            shared,
            trace_id: String::new(),
            client_trace_chosen: false,
            pending: None,
            gate: Gate::Undecided,
            held: None,
            unknown_key_token: None,
            rule: String::new(),
            credential: "",
            response_headers: Vec::new(),
        }
    }

    /// The response's headers: only what an allowing answer asked to add. Envoy calls into the
    /// VM for this phase whether or not the filter acts, so an empty list costs nothing more.
    pub fn on_response_headers(&mut self) -> Action {
        for (name, value) in std::mem::take(&mut self.response_headers) {
            self.host.set_response_header(&name, &value);
        }
        Action::Continue
    }

    /// Attaches this request's decision to Envoy's access log (filter state
    /// `wasm.authz_audit`, read by the sidecar's access-log service): the record built by
    /// `authz_core::audit`, as the sidecar builds it. One hostcall. `credential` is the
    /// presented token or key when no verified caller carries its fingerprint.
    fn record(&self, decision: &str, reason: &str, verified: Option<&Verified>, credential: Option<&str>) {
        let Some(shared) = &self.shared else { return };
        let mut w = shared.borrow_mut();
        if !w.settings.audit {
            return;
        }
        let decision_id = format!("{:032x}", w.rng.u128(..));
        let ctx = audit_record::Context {
            trace_id: &self.trace_id,
            client_trace_chosen: self.client_trace_chosen,
            decision_id: &decision_id,
            policy_version: &w.policy_version,
            tenant_claim: &w.pushed.settings.tenant_claim,
            decider: "filter",
        };
        let subject = Subject { rule: &self.rule, credential: self.credential, credential_text: credential };
        let bytes = audit_record::record_decision(&ctx, &subject, decision, reason, verified, None);
        drop(w);
        // A refused property is ignored: an audit record must never take a request down
        // (audit fails open).
        self.host.set_property(&[audit::FILTER_STATE], &bytes);
    }

    /// The worker's clock of its last tick, else the host's.
    fn now(&self) -> u64 {
        self.shared.as_ref().and_then(|s| s.borrow().clock).unwrap_or_else(|| self.host.now())
    }

    fn deny(&mut self, d: &Denial, verified: Option<&Verified>, credential: Option<&str>) -> Action {
        if let Some(s) = &self.shared {
            s.borrow().metrics.denied.inc();
        }
        self.record("deny", d.code, verified, credential);
        let body = d.body(&self.trace_id);
        let challenge = d.www_authenticate();
        let mut headers = vec![("content-type", "application/json")];
        // Past the headers phase Envoy's own echo (`%REQ(x-trace-id)%`, the request header we
        // rewrote) already puts the trace id on a local reply: a second one would repeat it.
        if self.gate == Gate::Undecided {
            headers.push((X_TRACE_ID, self.trace_id.as_str()));
        }
        if let Some(c) = &challenge {
            headers.push(("www-authenticate", c.as_str()));
        }
        self.host.send_response(u32::from(d.status), headers, body.as_bytes());
        self.gate = Gate::Closed;
        Action::Pause
    }

    /// Edits the request headers in place: removes what a client must not send, touches
    /// `x-trace-id` only when the client's is not the one chosen, and adds `identity`. A few
    /// hostcalls instead of replacing the whole header map, which makes Envoy re-create every
    /// header and was the largest cost of the hit path (see BENCHMARKS.md).
    fn write_headers(&self, removed: &[String], client_trace: ClientTrace, identity: Option<&Verified>) {
        for name in removed {
            // Removes every value of the name.
            self.host.set_request_header(name, None);
        }
        match client_trace {
            ClientTrace::Kept => {}
            ClientTrace::Absent => self.host.add_request_header(X_TRACE_ID, &self.trace_id),
            ClientTrace::Replaced => {
                self.host.set_request_header(X_TRACE_ID, None);
                self.host.add_request_header(X_TRACE_ID, &self.trace_id);
            }
        }
        for (name, value) in identity.into_iter().flat_map(Verified::headers) {
            self.host.add_request_header(name, value);
        }
    }

    /// Hands the request to the sidecar; the answer arrives in `on_grpc_call_response`. The
    /// sanitised headers are written first, so whatever happens next no client-sent identity
    /// header survives.
    fn ask_sidecar(&mut self, shared: &Shared, req: Sanitized<Vec<u8>>) -> Action {
        self.write_headers(&req.removed, req.client_trace, None);
        self.send_check(shared, &req.headers, &[])
    }

    /// A compute route: the sidecar needs the body to read the requested resources, so the
    /// (sanitised) headers wait for it; `on_http_request_body` sends both.
    fn ask_sidecar_with_body(&mut self, shared: &Shared, req: Sanitized<Vec<u8>>, end_of_stream: bool) -> Action {
        self.write_headers(&req.removed, req.client_trace, None);
        if end_of_stream {
            return self.send_check(shared, &req.headers, &[]);
        }
        self.held = Some(req.headers);
        self.gate = Gate::Collecting { body_len: 0 };
        Action::Pause
    }

    fn send_check(&mut self, shared: &Shared, headers: &[(String, Vec<u8>)], body: &[u8]) -> Action {
        let (settings, metrics) = {
            let w = shared.borrow();
            (Rc::clone(&w.settings), w.metrics)
        };
        let (cluster, timeout) = (&settings.sidecar_cluster, settings.sidecar_timeout);
        metrics.callouts.inc();
        // Envoy's downstream remote address, as its own ext_authz sends it (one hostcall, on
        // callouts only).
        let client = self.host.property(&["source", "address"]).and_then(|b| String::from_utf8(b).ok());
        let local = self.host.property(&["destination", "address"]).and_then(|b| String::from_utf8(b).ok());
        let peers = Peers { client: client.as_deref(), local: local.as_deref(), now: self.now() };
        let msg = build_check_request(headers, &self.trace_id, body, &peers);
        let metadata = settings.sidecar_metadata.pairs();
        match self.host.dispatch_grpc(cluster, ext_authz::SERVICE, ext_authz::METHOD, metadata, &msg, timeout) {
            Ok(token) => {
                self.pending = Some(token);
                self.gate = Gate::Pending;
                Action::Pause
            }
            Err(status) => {
                metrics.callout_errors.inc();
                self.host.warn(&format!("ext_authz callout to {cluster} could not be dispatched: {status:?}"));
                self.deny(
                    &Denial::unavailable(codes::AUTHZ_UNAVAILABLE, "the authorization service is unavailable"),
                    None,
                    None,
                )
            }
        }
    }
}

impl<H: Host> Http<H> {
    /// The sidecar's answer to the callout `token_id`.
    pub fn on_callout_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        if self.pending != Some(token_id) {
            return;
        }
        self.pending = None;
        let body = if response_size > 0 { self.host.grpc_response(response_size) } else { None };
        let Some(shared) = self.shared.clone() else { return };
        let metrics = shared.borrow().metrics;
        let verdict = interpret(status_code, body.as_deref());
        // The sidecar's own record of its decision goes to the access log as it is.
        let forwarded = match &verdict {
            CalloutVerdict::Allow { record, .. } | CalloutVerdict::Deny { record, .. } if !record.is_empty() => {
                let audit_on = shared.borrow().settings.audit;
                audit_on && self.host.set_property(&[audit::FILTER_STATE], record)
            }
            _ => false,
        };
        match verdict {
            CalloutVerdict::Allow { set, remove, response, .. } => {
                self.response_headers = response;
                if !forwarded {
                    self.record("allow", "ok", None, None);
                }
                for name in &remove {
                    self.host.set_request_header(name, None);
                }
                for (name, value) in &set {
                    self.host.set_request_header(name, Some(value));
                }
                metrics.allowed.inc();
                self.gate.on_verdict(true);
                self.host.resume();
            }
            CalloutVerdict::Deny { status, mut headers, body, .. } => {
                self.gate.on_verdict(false);
                if let Some(token) = self.unknown_key_token.take()
                    && denial_code(&body).as_deref() == Some("token_unknown_key")
                {
                    let now = self.now();
                    shared.borrow_mut().auth.remember_unknown_kid(&token, now);
                }
                metrics.denied.inc();
                if !forwarded {
                    self.record("deny", "sidecar_denied", None, None);
                }
                // Envoy's echo of the request's (rewritten) x-trace-id sets it on this reply.
                headers.retain(|(k, _)| k != X_TRACE_ID);
                let refs = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                self.host.send_response(u32::from(status), refs, body.as_bytes());
            }
            CalloutVerdict::Unavailable => {
                metrics.callout_errors.inc();
                self.host.warn(&format!("ext_authz callout failed (grpc status {status_code})"));
                self.deny(
                    &Denial::unavailable(codes::AUTHZ_UNAVAILABLE, "the authorization service is unavailable"),
                    None,
                    None,
                );
            }
        }
    }

    /// The request's headers: decided here, sent to the sidecar, or held for the body.
    pub fn on_headers(&mut self, end_of_stream: bool) -> Action {
        let Some(shared) = self.shared.clone() else {
            // Only reachable if Envoy ran a filter whose configuration failed: fail closed.
            return self.deny(
                &Denial::unavailable(codes::FILTER_UNCONFIGURED, "the gateway is not configured"),
                None,
                None,
            );
        };
        let headers = self.host.request_headers();
        let (settings, pushed, metrics) = {
            let w = shared.borrow();
            (Rc::clone(&w.settings), Rc::clone(&w.pushed), w.metrics)
        };
        // nginx's `auth_request` asks about another request: read before the override headers
        // that carry it are stripped.
        let original = auth_request::original(header(&headers, ":path").unwrap_or("/"), &headers);
        let mut req = sanitize(headers, &pushed.strip, || shared.borrow_mut().random16());
        self.trace_id = std::mem::take(&mut req.trace_id);
        self.client_trace_chosen = req.client_chosen;
        match original {
            // The pipeline, and the sidecar if it is asked, decide for the original request.
            Some(Ok(o)) => {
                set_pseudo(&mut req.headers, ":method", o.method);
                set_pseudo(&mut req.headers, ":path", o.path);
            }
            Some(Err(d)) => return self.deny(&d, None, None),
            None => {}
        }
        let method = header(&req.headers, ":method").unwrap_or("GET");
        let path = header(&req.headers, ":path").unwrap_or("/");
        let (policy, bootstrap) = {
            let w = shared.borrow();
            (w.policy.clone(), Rc::clone(&w.bootstrap))
        };
        let table = match policy.as_deref() {
            Some(t) => Table::Policy(t),
            // No policy yet: everything goes to the sidecar.
            None => Table::Bootstrap(&bootstrap),
        };
        let sources = pushed.providers.token_sources();
        let mut pipeline = Pipeline::with_sources(table, Request { method, path, headers: &req.headers }, sources);
        let step = {
            let now = self.now();
            let mut worker = shared.borrow_mut();
            pipeline.eval(&mut WorkerFacts { worker: &mut worker, now, metrics })
        };
        let route = pipeline.route();
        if settings.audit
            && let Some(r) = route
        {
            self.rule.clone_from(&r.id);
        }
        self.credential = pipeline.credential().as_str();
        let compute = route.is_some_and(|r| r.quota.is_some());
        let mut unknown_key = None;
        let local = local(step, pipeline.caller(), settings.on_stale, metrics, &mut unknown_key);
        self.unknown_key_token = unknown_key.map(str::to_string);
        let credential = pipeline.credential_text();
        match local {
            Local::Allow(verified, consumed) => {
                self.write_headers(&req.removed, req.client_trace, verified.as_deref());
                for name in consumed.names() {
                    self.host.set_request_header(name, None);
                }
                // A token from a cookie or another header does not go on either.
                match consumed.token_source.and_then(|i| sources.get(i)) {
                    Some(TokenSource { cookie: Some(name), .. }) => {
                        let rest = credential::without_cookie(&req.headers, name);
                        self.host.set_request_header("cookie", rest.as_deref());
                    }
                    Some(TokenSource { header: Some(name), .. }) => self.host.set_request_header(name, None),
                    _ => {}
                }
                self.gate = Gate::Open;
                metrics.allowed.inc();
                let reason = if verified.is_some() { "ok" } else { "public" };
                self.record("allow", reason, verified.as_deref(), credential);
                Action::Continue
            }
            Local::Deny(d, verified) => {
                // The request's own `x-trace-id` too: Envoy echoes it onto every response, this
                // one included (`%REQ(x-trace-id)%`), so a client's malformed id left in place
                // would be handed back instead of the gateway's.
                if req.client_trace == ClientTrace::Replaced {
                    self.write_headers(&req.removed, req.client_trace, None);
                }
                self.deny(&d, verified.as_deref(), credential)
            }
            Local::AskSidecar if compute => self.ask_sidecar_with_body(&shared, req, end_of_stream),
            Local::AskSidecar => self.ask_sidecar(&shared, req),
        }
    }

    pub fn on_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.shared.as_ref().map_or(0, |s| s.borrow().settings.max_compute_body_bytes);
        let step = self.gate.on_body(body_size, end_of_stream, max);
        self.take_step(step)
    }

    /// Trailers (HTTP/2 trailers, HTTP/1.1 chunked trailers) end the body: without this
    /// callback the SDK's default `Continue` released a paused request before its verdict.
    pub fn on_trailers(&mut self) -> Action {
        // Trailers reach an HTTP/2 or gRPC upstream as headers do: no identity name there either.
        if let Some(shared) = &self.shared {
            let pushed = Rc::clone(&shared.borrow().pushed);
            // As bytes: a trailer value need not be UTF-8.
            for (name, _) in self.host.request_trailers() {
                if pushed.strip.is_identity_header(&name) {
                    self.host.remove_request_trailer(&name);
                }
            }
        }
        let step = self.gate.on_trailers();
        self.take_step(step)
    }
}

impl<H: Host> Http<H> {
    /// Turns the gate's answer for a body or trailers phase into hostcalls.
    fn take_step(&mut self, step: Step) -> Action {
        match step {
            Step::Pass => Action::Continue,
            // With Envoy's `allow_on_headers_stop_iteration`, `Continue` from a later phase
            // would release the paused headers too: holding is the only safe answer.
            Step::Hold => Action::Pause,
            Step::TooLarge => {
                self.held = None;
                self.deny(&BODY_TOO_LARGE, None, None)
            }
            Step::SendWithBody { body_len } => {
                let Some(shared) = self.shared.clone() else {
                    return self.deny(
                        &Denial::unavailable(codes::FILTER_UNCONFIGURED, "the gateway is not configured"),
                        None,
                        None,
                    );
                };
                let body = if body_len > 0 { self.host.request_body(body_len) } else { Vec::new() };
                let headers = self.held.take().unwrap_or_default();
                self.send_check(&shared, &headers, &body)
            }
        }
    }
}

impl Context for Http<Envoy> {
    fn on_grpc_call_response(&mut self, token_id: u32, status_code: u32, response_size: usize) {
        self.on_callout_response(token_id, status_code, response_size);
    }
}

impl HttpContext for Http<Envoy> {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        self.on_headers(end_of_stream)
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.on_body(body_size, end_of_stream)
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        self.on_trailers()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.on_response_headers()
    }
}
