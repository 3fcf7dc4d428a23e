//! Turning a decision into a `CheckResponse`: headers to set and remove, the denial's body,
//! and the audit record every answer carries as `dynamic_metadata`.

use authz_core::cache::fingerprint;
use authz_core::credential::{self, Credential};
use authz_core::headers::{X_QUOTA_LEASE, X_TRACE_ID};
use authz_core::request::Sanitized;
use authz_core::{Denial, Identity};
use authz_proto::audit::field;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use envoy_types::pb::google::rpc;

/// gRPC status codes carried in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

/// The sidecar's audit record of one decision, returned as ext_authz `dynamic_metadata`
/// (field names in `authz_proto::audit::field`; the filter forwards it to the access log).
pub(super) struct Record {
    fields: std::collections::BTreeMap<String, Value>,
}

impl Record {
    pub(super) fn new(req: &Sanitized<String>, rule: &str, policy_version: &str) -> Self {
        let mut r = Self { fields: Default::default() };
        let (credential, fp) = match credential::extract(&req.headers) {
            Credential::Bearer(t) => ("bearer", fingerprint(t)),
            Credential::ApiKey(k) => ("api_key", fingerprint(k)),
            Credential::None => ("none", String::new()),
            Credential::Invalid(_) => ("invalid", String::new()),
        };
        r.put(field::TRACE_ID, &req.trace_id);
        if req.client_chosen {
            r.put(field::CLIENT_TRACE_ID, &req.trace_id);
        }
        r.put(field::DECISION_ID, &uuid::Uuid::new_v4().simple().to_string());
        r.put(field::RULE, rule);
        r.put(field::POLICY_VERSION, policy_version);
        r.put(field::CREDENTIAL, credential);
        r.put(field::TOKEN_FINGERPRINT, &fp);
        r.put(field::DECIDER, "sidecar");
        r
    }

    fn put(&mut self, key: &str, value: &str) {
        if !value.is_empty() {
            self.fields.insert(key.to_string(), Value { kind: Some(Kind::StringValue(value.to_string())) });
        }
    }

    pub(super) fn finish(
        mut self,
        decision: &str,
        reason: &str,
        id: Option<&Identity>,
        lease: Option<&str>,
        tenant_claim: &str,
    ) -> Struct {
        self.put(field::DECISION, decision);
        self.put(field::REASON, reason);
        if let Some(id) = id {
            self.put(field::USER_ID, &id.user_id);
            self.put(field::TENANT, id.tenant(tenant_claim).unwrap_or(""));
            self.put(field::SERVICE, id.service.as_deref().unwrap_or(""));
        }
        self.put(field::QUOTA_LEASE, lease.unwrap_or(""));
        Struct { fields: self.fields.into_iter().collect() }
    }
}

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_string(), value: value.to_string(), ..Default::default() }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

pub(super) fn allow(
    req: &Sanitized<String>,
    id: Option<&Identity>,
    lease: Option<&str>,
    record: Struct,
) -> CheckResponse {
    let mut headers = vec![header(X_TRACE_ID, &req.trace_id)];
    if let Some(id) = id {
        headers.extend(id.headers().iter().map(|(k, v)| header(k, v)));
    }
    if let Some(lease) = lease {
        headers.push(header(X_QUOTA_LEASE, lease));
    }
    // Envoy applies `headers_to_remove` after `headers`: never remove a name we set.
    let headers_to_remove = req
        .removed
        .iter()
        .filter(|name| !headers.iter().any(|h| h.header.as_ref().is_some_and(|h| h.key.eq_ignore_ascii_case(name))))
        .cloned()
        .collect();
    CheckResponse {
        status: Some(rpc::Status { code: OK, ..Default::default() }),
        http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
            // The trace id on the response too (the native mode has no echo of its own).
            response_headers_to_add: vec![header(X_TRACE_ID, &req.trace_id)],
            headers,
            headers_to_remove,
            ..Default::default()
        })),
        dynamic_metadata: Some(record),
    }
}

pub(super) fn deny(d: &Denial, trace_id: &str, extra: Option<serde_json::Value>, record: Struct) -> CheckResponse {
    let mut headers = vec![header("content-type", "application/json"), header(X_TRACE_ID, trace_id)];
    if let Some(c) = d.www_authenticate() {
        headers.push(header("www-authenticate", &c));
    }
    let code = if d.status == 401 { UNAUTHENTICATED } else { PERMISSION_DENIED };
    CheckResponse {
        status: Some(rpc::Status { code, message: d.code.to_string(), ..Default::default() }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus { code: i32::from(d.status) }),
            headers,
            body: body_with(d, trace_id, extra),
        })),
        dynamic_metadata: Some(record),
    }
}

/// The denial's JSON body, with `extra`'s fields added (quota numbers, a detail).
fn body_with(d: &Denial, trace_id: &str, extra: Option<serde_json::Value>) -> String {
    let Some(serde_json::Value::Object(extra)) = extra else { return d.body(trace_id) };
    let mut body = serde_json::json!({"error": d.code, "message": d.message, "trace_id": trace_id});
    if let Some(obj) = body.as_object_mut() {
        for (k, v) in extra {
            obj.entry(k).or_insert(v);
        }
    }
    body.to_string()
}
