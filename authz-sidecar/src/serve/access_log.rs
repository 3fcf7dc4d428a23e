//! `envoy.service.accesslog.v3.AccessLogService`: Envoy streams one entry per request here
//! (`envoy.access_loggers.http_grpc`, buffered and asynchronous inside Envoy, so it never
//! holds a request), and each entry becomes one audit event. (The filter batching its own
//! records instead was measured and cost Envoy more; see BENCHMARKS.md.)
//!
//! The decision itself comes with the entry: the filter's record as filter state
//! `wasm.authz_audit`, or (native ext_authz) the sidecar's record as ext_authz dynamic
//! metadata. Envoy adds what only it knows: the final status, latency, client address. A
//! compute request whose upstream answered with an error also ends its quota lease here (the
//! lease id is taken from the record, never from a client-controlled header).

use std::collections::BTreeMap;
use std::sync::Arc;

use authz_proto::audit::{self, field};
use envoy_types::pb::envoy::config::core::v3::RequestMethod;
use envoy_types::pb::envoy::config::core::v3::address::Address;
use envoy_types::pb::envoy::data::accesslog::v3::HttpAccessLogEntry;
use envoy_types::pb::envoy::service::accesslog::v3::access_log_service_server::AccessLogService;
use envoy_types::pb::envoy::service::accesslog::v3::stream_access_logs_message::LogEntries;
use envoy_types::pb::envoy::service::accesslog::v3::{StreamAccessLogsMessage, StreamAccessLogsResponse};
use envoy_types::pb::google::protobuf::value::Kind;
use prost::Message;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, warn};

use crate::audit::AuditEvent;
use crate::backend::AuditWriter;
use crate::metrics::Metrics;
use crate::quota::Quota;

#[derive(Clone)]
pub struct AccessLogs {
    sink: Arc<dyn AuditWriter>,
    quota: Arc<Quota>,
    metrics: Arc<Metrics>,
}

impl AccessLogs {
    pub fn new(sink: Arc<dyn AuditWriter>, quota: Arc<Quota>, metrics: Arc<Metrics>) -> Self {
        Self { sink, quota, metrics }
    }

    fn handle(&self, entry: &HttpAccessLogEntry) {
        self.metrics.access_log_entries.inc();
        self.handle_event(event_from(entry));
    }

    /// Ends the lease of a compute request whose service failed, and queues the event.
    fn handle_event(&self, event: AuditEvent) {
        let status = event.get("status").and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        if let Some(lease) = event.get(field::QUOTA_LEASE).filter(|_| status >= 400) {
            let (quota, lease) = (Arc::clone(&self.quota), lease.to_string());
            tokio::spawn(async move {
                if let Err(e) = quota.release(&lease, "upstream_error").await {
                    // The lease's TTL still ends it.
                    warn!(error = %e, "could not release the lease of a failed compute request");
                }
            });
        }
        self.sink.submit(event);
    }
}

#[tonic::async_trait]
impl AccessLogService for AccessLogs {
    async fn stream_access_logs(
        &self,
        request: Request<Streaming<StreamAccessLogsMessage>>,
    ) -> Result<Response<StreamAccessLogsResponse>, Status> {
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            match msg.log_entries {
                Some(LogEntries::HttpLogs(logs)) => logs.log_entry.iter().for_each(|e| self.handle(e)),
                Some(LogEntries::TcpLogs(_)) | None => debug!("ignoring a non-HTTP access-log message"),
            }
        }
        Ok(Response::new(StreamAccessLogsResponse {}))
    }
}

/// `google.protobuf.BytesValue`: how Envoy serialises a wasm filter-state object.
#[derive(Clone, PartialEq, Message)]
struct BytesValue {
    #[prost(bytes = "vec", tag = "1")]
    value: Vec<u8>,
}

/// The decision record attached to the entry, from the filter or from ext_authz.
fn record_of(entry: &HttpAccessLogEntry) -> BTreeMap<String, String> {
    let Some(common) = &entry.common_properties else { return BTreeMap::new() };
    if let Some(any) = common.filter_state_objects.get(audit::FILTER_STATE_LOGGED) {
        match BytesValue::decode(any.value.as_slice()).map(|b| audit::decode(&b.value)) {
            Ok(Ok(record)) => return record,
            _ => warn!("an access-log entry carried an unreadable decision record"),
        }
    }
    let Some(meta) = common.metadata.as_ref().and_then(|m| m.filter_metadata.get(audit::EXT_AUTHZ_NAMESPACE)) else {
        return BTreeMap::new();
    };
    meta.fields
        .iter()
        .filter_map(|(k, v)| match &v.kind {
            Some(Kind::StringValue(s)) => Some((k.clone(), s.clone())),
            _ => None,
        })
        .collect()
}

/// One audit event from an access-log entry: the decision record plus what Envoy knows.
pub fn event_from(entry: &HttpAccessLogEntry) -> AuditEvent {
    let mut record = record_of(entry);
    let common = entry.common_properties.clone().unwrap_or_default();
    let req = entry.request.clone().unwrap_or_default();
    let resp = entry.response.clone().unwrap_or_default();
    let mut fill = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            record.entry(k.to_string()).or_insert(v);
        }
    };
    // Without a decision record nothing checked the request's trace id (an Envoy local reply,
    // a route without authorization): only a well-formed one is taken, never a client's junk.
    let trace = |v: Option<&String>| v.and_then(|v| authz_core::trace::well_formed(v));
    fill(field::TRACE_ID, trace(req.request_headers.get("x-trace-id")));
    fill(field::TRACE_ID, trace(resp.response_headers.get("x-trace-id")));
    fill(
        field::TIME_MS,
        common
            .start_time
            .as_ref()
            .map(|t| (i128::from(t.seconds) * 1000 + i128::from(t.nanos) / 1_000_000).to_string()),
    );
    fill(field::STATUS, resp.response_code.map(|c| c.value.to_string()));
    // The method as the client sent it (Envoy's enum has no value for an extension method
    // such as PROPFIND, which it records as METHOD_UNSPECIFIED); the enum only as a fallback.
    fill(field::METHOD, req.request_headers.get(":method").cloned());
    fill(field::METHOD, RequestMethod::try_from(req.request_method).ok().map(|m| m.as_str_name().to_string()));
    fill(field::PATH, Some(req.path.clone()));
    fill(field::ROUTE, Some(common.route_name.clone()));
    fill(
        field::CLIENT,
        match common.downstream_remote_address.as_ref().and_then(|a| a.address.as_ref()) {
            Some(Address::SocketAddress(s)) => Some(s.address.clone()),
            _ => None,
        },
    );
    fill(field::USER_AGENT, Some(req.user_agent.clone()));
    fill(
        field::LATENCY_MS,
        common
            .time_to_last_downstream_tx_byte
            .as_ref()
            .map(|d| format!("{:.3}", d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6)),
    );
    event_from_record(record)
}

/// One audit event from a complete record, in the README's field order. A record without a decision says so (`none`, `not_evaluated`).
pub fn event_from_record(mut record: BTreeMap<String, String>) -> AuditEvent {
    if let Some(path) = record.get_mut(field::PATH)
        && let Some(at) = path.find('?')
    {
        path.truncate(at);
    }
    for (name, default) in [(field::DECISION, "none"), (field::REASON, "not_evaluated")] {
        let value = record.entry(name.to_string()).or_default();
        if value.is_empty() {
            *value = default.to_string();
        }
    }
    let fields = audit::EVENT_FIELDS
        .iter()
        .filter_map(|name| record.remove(*name).filter(|v| !v.is_empty()).map(|v| (*name, v)))
        .collect();
    AuditEvent { fields }
}

#[cfg(test)]
mod tests {
    use envoy_types::pb::envoy::data::accesslog::v3::{AccessLogCommon, HttpRequestProperties, HttpResponseProperties};
    use envoy_types::pb::google::protobuf::{Any, UInt32Value};

    use super::*;

    fn entry(record: Option<Vec<u8>>, status: u32, path: &str) -> HttpAccessLogEntry {
        let mut common = AccessLogCommon::default();
        if let Some(r) = record {
            common.filter_state_objects.insert(
                audit::FILTER_STATE_LOGGED.into(),
                Any {
                    type_url: "type.googleapis.com/google.protobuf.BytesValue".into(),
                    value: BytesValue { value: r }.encode_to_vec(),
                },
            );
        }
        HttpAccessLogEntry {
            common_properties: Some(common),
            request: Some(HttpRequestProperties {
                request_method: RequestMethod::Post as i32,
                path: path.into(),
                request_headers: [("x-trace-id".to_string(), HEADER_TRACE.to_string())].into(),
                ..Default::default()
            }),
            response: Some(HttpResponseProperties {
                response_code: Some(UInt32Value { value: status }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const HEADER_TRACE: &str = "3f2504e0-4f89-41d3-9a0c-0305e82c3301";

    #[test]
    fn a_malformed_trace_id_is_not_taken_from_the_headers() {
        let mut e = entry(None, 413, "/x");
        if let Some(r) = e.request.as_mut() {
            r.request_headers.insert("x-trace-id".into(), "../../etc/passwd".into());
        }
        assert_eq!(event_from(&e).get("trace_id"), None);
    }

    #[test]
    fn record_and_envoy_fields_make_one_event() {
        let mut w = audit::RecordWriter::default();
        w.put(field::TRACE_ID, "t-1").put(field::DECISION, "deny").put(field::REASON, "token_expired");
        let e = event_from(&entry(Some(w.finish()), 401, "/api/tes/v1/tasks?secret=1"));
        assert_eq!(e.get("trace_id"), Some("t-1"));
        assert_eq!(e.get("decision"), Some("deny"));
        assert_eq!(e.get("status"), Some("401"));
        assert_eq!(e.get("method"), Some("POST"));
        assert_eq!(e.get("path"), Some("/api/tes/v1/tasks"), "query strings are dropped");
    }

    #[test]
    fn without_a_record_the_event_says_so() {
        let e = event_from(&entry(None, 404, "/x"));
        assert_eq!(e.get("decision"), Some("none"));
        assert_eq!(e.get("reason"), Some("not_evaluated"));
        assert_eq!(e.get("trace_id"), Some(HEADER_TRACE));
        let broken = event_from(&entry(Some(b"\xff\xff".to_vec()), 200, "/x"));
        assert_eq!(broken.get("decision"), Some("none"));
    }
}
