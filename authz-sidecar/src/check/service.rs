//! The tonic service: a `CheckRequest` in, the pipeline driven by the [`Decider`], a
//! `CheckResponse` out (with the Rego decision's effects and the audit record).

use std::sync::Arc;

use authz_core::audit::{self, Subject};
use authz_core::auth_request;
use authz_core::denial::codes;
use authz_core::pipeline::{Outcome, Pipeline, Request as Decide, Table};
use authz_core::request::sanitize;
use envoy_types::ext_authz::v3::pb::{Authorization, CheckRequest, CheckResponse};
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::protobuf::Struct;
use prost::Message;
use tonic::{Request, Response, Status};
use tracing::{Span, debug};

use super::response::{self, allow, deny};
use super::{Decider, Extras, rego_input};

/// The Rego decision of this request, if a rule made one.
fn taken(extras: &Extras<'_>) -> Option<crate::policy::RegoDecision> {
    extras.decision.lock().ok().and_then(|mut d| d.take())
}

/// The tonic service.
pub struct AuthzService {
    decider: Arc<Decider>,
}

impl AuthzService {
    pub fn new(decider: Arc<Decider>) -> Self {
        Self { decider }
    }
}

#[tonic::async_trait]
impl Authorization for AuthzService {
    #[tracing::instrument(name = "check", skip_all, fields(trace_id, result, policy_version))]
    async fn check(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let started = std::time::Instant::now();
        let answer = self.answer(request).await;
        self.decider.metrics.check_duration.observe(started.elapsed().as_secs_f64());
        answer
    }
}

impl AuthzService {
    async fn answer(&self, request: Request<CheckRequest>) -> Result<Response<CheckResponse>, Status> {
        let attributes = request.into_inner().attributes.unwrap_or_default();
        let peer = |p: Option<&envoy_types::pb::envoy::service::auth::v3::attribute_context::Peer>| match p
            .and_then(|p| p.address.as_ref())
            .and_then(|a| a.address.as_ref())
        {
            Some(Address::SocketAddress(s)) => {
                let port = match s.port_specifier {
                    Some(envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier::PortValue(p)) => p,
                    _ => 0,
                };
                Some((s.address.clone(), port))
            }
            _ => None,
        };
        let (source, destination) = (peer(attributes.source.as_ref()), peer(attributes.destination.as_ref()));
        let client = source.as_ref().map(|(a, _)| a.clone()).unwrap_or_default();
        let request_attrs = attributes.request.unwrap_or_default();
        let time = request_attrs.time.map(|t| (t.seconds, t.nanos));
        let http = request_attrs.http.unwrap_or_default();
        let attrs = rego_input::Attributes {
            source,
            destination,
            time,
            id: http.id.clone(),
            host: http.host.clone(),
            scheme: http.scheme.clone(),
            protocol: http.protocol.clone(),
        };
        let headers = request_headers(&http);
        // nginx's `auth_request` asks about another request: read before the override headers
        // that carry it are stripped.
        let original = auth_request::original(&http.path, &headers);
        let req = sanitize(headers, &self.decider.strip, || *uuid::Uuid::new_v4().as_bytes());
        let span = Span::current();
        span.record("trace_id", req.trace_id.as_str());
        let policy = self.decider.policy.current();
        span.record("policy_version", policy.version.as_str());
        // Envoy sends the body as bytes (`raw_body`) when `pack_as_bytes` is set, else as text.
        let body = if http.raw_body.is_empty() { http.body.as_bytes() } else { http.raw_body.as_slice() };
        let metrics = &self.decider.metrics;
        let decision_id = uuid::Uuid::new_v4().simple().to_string();
        let ctx = audit::Context {
            trace_id: &req.trace_id,
            client_trace_chosen: req.client_chosen,
            decision_id: &decision_id,
            policy_version: &policy.version,
            tenant_claim: &self.decider.tenant_claim,
            decider: "sidecar",
        };
        let (method, path) = match original {
            Some(Ok(o)) => (o.method, o.path),
            // An original URI that cannot be a request: refused before any rule (as the filter
            // does, with the same record).
            Some(Err(d)) => {
                span.record("result", d.code);
                metrics.checks.get_or_create(&vec![("result", "deny"), ("code", d.code)]).inc();
                let subject = Subject { rule: "", credential: "", credential_text: None };
                let bytes = audit::record_decision(&ctx, &subject, "deny", d.code, None, None);
                return Ok(Response::new(deny(&d, &req.trace_id, None, Some(record_struct(&bytes)))));
            }
            None => (http.method.clone(), http.path.clone()),
        };
        let mut pipeline = Pipeline::with_sources(
            Table::Policy(&policy.table),
            Decide { method: &method, path: &path, headers: &req.headers },
            self.decider.providers.token_sources(),
        );
        let extras =
            Extras { policy: &policy, body, client: &client, attrs: &attrs, decision: std::sync::Mutex::new(None) };
        let outcome = self.decider.drive(&mut pipeline, &extras).await;
        let record = audit::record(&ctx, &Subject::of(&pipeline), &outcome).map(|bytes| record_struct(&bytes));
        match outcome {
            Outcome::Allow { caller, lease, consumed } => {
                span.record("result", "allow");
                metrics.checks.get_or_create(&vec![("result", "allow"), ("code", "ok")]).inc();
                let source = consumed.token_source.and_then(|i| self.decider.providers.token_sources().get(i));
                let mut resp = allow(&req, caller.as_deref(), lease.as_deref(), consumed, source, record);
                if let Some(d) = taken(&extras) {
                    response::with_decision_allowed(&mut resp, &d);
                }
                Ok(Response::new(resp))
            }
            Outcome::Deny { denial: d, detail, .. } => {
                span.record("result", d.code);
                debug!(code = d.code, status = d.status, "denied");
                metrics.checks.get_or_create(&vec![("result", "deny"), ("code", d.code)]).inc();
                let mut resp = deny(&d, &req.trace_id, Some(detail), record);
                if d.code == codes::POLICY_DENIED
                    && let Some(decision) = taken(&extras)
                {
                    response::with_decision_denied(&mut resp, &decision);
                }
                Ok(Response::new(resp))
            }
            Outcome::Unavailable(reason) => {
                span.record("result", "unavailable");
                metrics.checks.get_or_create(&vec![("result", "unavailable"), ("code", reason)]).inc();
                Err(Status::unavailable(reason))
            }
        }
    }
}

/// The record's bytes as the `Struct` a `CheckResponse` carries (the same encoding: Envoy and
/// the filter read back exactly what `authz_core::audit` wrote).
fn record_struct(bytes: &[u8]) -> Struct {
    Struct::decode(bytes).unwrap_or_default()
}

/// The request headers, from the `headers` map or (newer Envoy option) `header_map`.
fn request_headers(http: &HttpRequest) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        http.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect();
    if let Some(map) = &http.header_map {
        for h in &map.headers {
            let value = if h.raw_value.is_empty() {
                h.value.clone()
            } else {
                String::from_utf8_lossy(&h.raw_value).into_owned()
            };
            out.push((h.key.to_ascii_lowercase(), value));
        }
    }
    out
}
