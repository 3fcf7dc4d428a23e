//! Turning a decision into a `CheckResponse`: headers to set and remove, the denial's body,
//! and the audit record (`authz_core::audit`) every answer carries as `dynamic_metadata`.

use authz_core::Denial;
use authz_core::authenticator::Verified;
use authz_core::credential::{self, TokenSource};
use authz_core::headers::{X_QUOTA_LEASE, X_TRACE_ID};
use authz_core::pipeline::Consumed;
use authz_core::request::Sanitized;
use envoy_types::ext_authz::v3::pb::{
    CheckResponse, DeniedHttpResponse, HeaderAppendAction, HeaderValue, HeaderValueOption, HttpResponse, HttpStatus,
    OkHttpResponse,
};
use envoy_types::pb::google::protobuf::Struct;
use envoy_types::pb::google::rpc;

/// gRPC status codes carried in `CheckResponse.status`.
const OK: i32 = 0;
const PERMISSION_DENIED: i32 = 7;
const UNAUTHENTICATED: i32 = 16;

fn header(key: &str, value: &str) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue { key: key.to_string(), value: value.to_string(), ..Default::default() }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
        ..Default::default()
    }
}

pub(super) fn allow(
    req: &Sanitized<String>,
    caller: Option<&Verified>,
    lease: Option<&str>,
    consumed: Consumed,
    source: Option<&TokenSource>,
    record: Option<Struct>,
) -> CheckResponse {
    let mut headers = vec![header(X_TRACE_ID, &req.trace_id)];
    // A token from a cookie or another header stops here too: the cookie leaves the `Cookie`
    // header (the rest stays), the header goes.
    let mut gone: Vec<String> = consumed.names().map(String::from).collect();
    match source {
        Some(TokenSource { cookie: Some(name), .. }) => match credential::without_cookie(&req.headers, name) {
            Some(rest) => headers.push(header("cookie", &rest)),
            None => gone.push("cookie".into()),
        },
        Some(TokenSource { header: Some(name), .. }) => gone.push(name.clone()),
        _ => {}
    }
    if let Some(caller) = caller {
        headers.extend(caller.headers().map(|(k, v)| header(k, v)));
    }
    if let Some(lease) = lease {
        headers.push(header(X_QUOTA_LEASE, lease));
    }
    // Envoy applies `headers_to_remove` after `headers`: never remove a name we set.
    let headers_to_remove = req
        .removed
        .iter()
        .cloned()
        .chain(gone)
        .filter(|name| !headers.iter().any(|h| h.header.as_ref().is_some_and(|h| h.key.eq_ignore_ascii_case(name))))
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
        dynamic_metadata: record,
    }
}

pub(super) fn deny(
    d: &Denial,
    trace_id: &str,
    extra: Option<serde_json::Value>,
    record: Option<Struct>,
) -> CheckResponse {
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
        dynamic_metadata: record,
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

/// An allowing Rego decision's effects (OPA-Envoy's object form): headers added to the request
/// to the upstream and removed from it, headers added to the response to the client.
pub(super) fn with_decision_allowed(resp: &mut CheckResponse, d: &crate::policy::RegoDecision) {
    if let Some(HttpResponse::OkResponse(ok)) = &mut resp.http_response {
        ok.headers.extend(d.headers.iter().map(|(k, v)| header(k, v)));
        ok.response_headers_to_add.extend(d.response_headers.iter().map(|(k, v)| header(k, v)));
        let set: Vec<String> = ok.headers.iter().filter_map(|h| h.header.as_ref().map(|h| h.key.clone())).collect();
        ok.headers_to_remove.extend(d.remove.iter().filter(|r| !set.contains(r)).cloned());
    }
}

/// A denying Rego decision's status, body and headers, where it gives them.
pub(super) fn with_decision_denied(resp: &mut CheckResponse, d: &crate::policy::RegoDecision) {
    if let Some(HttpResponse::DeniedResponse(denied)) = &mut resp.http_response {
        if let Some(status) = d.status {
            denied.status = Some(HttpStatus { code: i32::from(status) });
        }
        if let Some(body) = &d.body {
            denied.body.clone_from(body);
            // The gateway's own content type described its JSON body, not the policy's.
            denied.headers.retain(|h| h.header.as_ref().is_none_or(|h| h.key != "content-type"));
        }
        denied.headers.extend(d.headers.iter().map(|(k, v)| header(k, v)));
    }
}
